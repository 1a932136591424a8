"""One entry for generator weight files, told apart by content (the suffix only where the content says nothing).

- a torch.save file (zip archive, or the legacy stream's magic number): rosinality's StyleGAN2 `.pt`
  (`{'g_ema': ...}`, or pSp/e4e's `decoder.` weights) or an InterFaceGAN PGGAN/StyleGAN `.pth` state dict;
- a pickle naming `torch_utils.persistence`: an NVlabs PyTorch snapshot (stylegan2-ada-pytorch, stylegan3),
  StyleGAN3 when its synthesis network has a Fourier-feature `input`, else StyleGAN2;
- any other pickle: NVIDIA's original TensorFlow/Theano `.pkl`: StyleGAN2 when it names
  `G_synthesis_stylegan2`, else PGGAN / StyleGAN.
Unrecognised bytes go by suffix (`.pkl`: NVIDIA pickle, else torch file), so their errors stay the readers' own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from converters import stylegan2_pickle, stylegan3_pickle
from converters.interfacegan import KINDS as INTERFACEGAN_KINDS
from converters.interfacegan import convert_state_dict
from converters.nvlabs_pickle import LEGACY_MAGIC, PERSISTENCE_GLOBAL, UNUSED_OPCODES, check_pickle_opcodes
from converters.rosinality import ENCODER_STATE_KEY, GENERATOR_KEY, convert_rosinality
from converters.stylegan2_pickle import FAMILY as STYLEGAN2
from converters.stylegan2_tf import SYNTHESIS_MARK, convert_stylegan2_tf_pickle
from converters.stylegan3_pickle import FAMILY as STYLEGAN3
from converters.tf_pickle import convert_tf_pickle
from converters.torch_checkpoint import flatten_state_dict, read_torch_checkpoint
from ifgan_jax.errors import CheckpointError

KINDS = (*INTERFACEGAN_KINDS, STYLEGAN2, STYLEGAN3)
ZIP_MAGIC = b"PK"
PICKLE_PROTO = b"\x80"  # protocol >= 2 pickles start with PROTO
# torch's legacy stream starts with a protocol-2 pickle of LEGACY_MAGIC: PROTO 2, LONG1 of 10 bytes.
LEGACY_HEAD = b"\x80\x02\x8a\x0a" + LEGACY_MAGIC.to_bytes(10, "little")
PERSISTENCE_MARK = PERSISTENCE_GLOBAL[0].encode()  # the module name every NVlabs PyTorch pickle spells out


def file_format(path: str | os.PathLike) -> tuple[str, bytes | None]:
    """('torch' | 'nvlabs' | 'nvidia-tf2' | 'nvidia-tf' | 'unknown', the bytes when they were read to tell)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(LEGACY_HEAD))
            if head.startswith(ZIP_MAGIC) or head == LEGACY_HEAD:
                return "torch", None
            if not head.startswith(PICKLE_PROTO):
                return "unknown", None
            data = head + fh.read()
    except OSError:
        return "unknown", None  # the reader chosen by suffix reports it
    if PERSISTENCE_MARK in data:
        return "nvlabs", data
    return ("nvidia-tf2" if SYNTHESIS_MARK in data else "nvidia-tf"), data


def convert_generator_file(path: str | os.PathLike, kind: str | None = None) -> tuple[str, Any, dict, dict]:
    """A generator weights file -> (family, config, params, buffers); see the module docstring for the formats."""
    if kind is not None and kind not in KINDS:
        raise CheckpointError(f"unknown generator kind {kind!r}; expected one of {KINDS}")
    path = Path(path)
    fmt, data = file_format(path)
    if fmt == "unknown":
        fmt = "nvidia-tf" if path.suffix.lower() == ".pkl" else "torch"
    if fmt == "nvlabs":
        return convert_nvlabs_file(path, data, kind)
    if fmt in ("nvidia-tf2", "nvidia-tf") and data is not None:
        # The TF reader hands the bytes to the C unpickler as they are; a damaged length or memo index there
        # allocates whatever it claims. Walking the opcodes first refuses those (bounded, nothing built).
        try:
            check_pickle_opcodes(data, forbidden=UNUSED_OPCODES)
        except CheckpointError as err:
            raise CheckpointError(f"{path}: {err}") from None
    if fmt == "nvidia-tf2":
        return convert_stylegan2_tf_pickle(path, kind=kind)
    if fmt == "nvidia-tf":
        return convert_tf_pickle(path, kind=kind)
    obj = read_torch_checkpoint(path)
    try:
        if isinstance(obj, Mapping) and (GENERATOR_KEY in obj or ENCODER_STATE_KEY in obj):
            if kind is not None and kind != STYLEGAN2:
                raise CheckpointError(f"the weights are a rosinality {STYLEGAN2} generator, not {kind}")
            return convert_rosinality(obj)
        if kind == STYLEGAN2:
            raise CheckpointError(f"not a rosinality StyleGAN2 checkpoint: no {GENERATOR_KEY!r} key")
        return convert_state_dict(flatten_state_dict(obj), kind)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    except (TypeError, ValueError, IndexError, KeyError, AttributeError) as err:  # a value of an unexpected kind
        raise CheckpointError(f"{path}: malformed checkpoint ({type(err).__name__}: {str(err)[:200]})") from None


def convert_nvlabs_file(path: Path, data: bytes | None, kind: str | None) -> tuple[str, Any, dict, dict]:
    """An NVlabs PyTorch pickle: StyleGAN2 or StyleGAN3 by the generator's modules."""
    G = stylegan2_pickle.load_generator_module(path, data)
    family, module = ((STYLEGAN3, stylegan3_pickle) if stylegan3_pickle.is_stylegan3(G)
                      else (STYLEGAN2, stylegan2_pickle))
    if kind is not None and kind != family:
        raise CheckpointError(f"{path}: the pickle holds an NVlabs PyTorch {family} generator, not {kind}")
    try:
        return module.convert_generator_module(G)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None

"""torchvision VGG16 state dict (.pth) and LPIPS linear heads -> the params pytree of ifgan_jax/models/vgg16.py."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from converters.torch_checkpoint import flatten_state_dict, read_torch_checkpoint
from ifgan_jax.errors import CheckpointError, InputError
from ifgan_jax.models.vgg16 import CONVS, TAPS


def convert_vgg16(path: str | os.PathLike, lpips_lin: str | os.PathLike | None = None) -> dict:
    """A torchvision VGG16 state dict (`features.N.weight/bias`) and optional LPIPS heads -> params.

    params = {"conv": [(kernel HWIO, bias), ...13], "lin": [(C,), ...5] or []}. The heads are LPIPS'
    `lin{k}.model.{0,1}.weight` (1, C, 1, 1); they may also live in the VGG16 file. Channel counts are read
    from the file, so narrower synthetic weights work the same way.
    """
    state = read_state_dict(path)
    name = Path(path).name
    convs, in_ch = [], 3
    for pos, idx in enumerate(CONVS):
        w, b = state.get(f"features.{idx}.weight"), state.get(f"features.{idx}.bias")
        if w is None or b is None:
            raise InputError(f"{name}: not a torchvision VGG16 state dict (no features.{idx}.weight/bias)")
        if w.ndim != 4 or w.shape[1:] != (in_ch, 3, 3) or b.shape != (w.shape[0],):
            raise InputError(f"{name}: features.{idx} has shape {w.shape} / {b.shape}; expected "
                             f"(out, {in_ch}, 3, 3) / (out,) for conv {pos} of VGG16")
        # torch OIHW cross-correlation -> HWIO for lax.conv (also a cross-correlation: no flip).
        convs.append((np.ascontiguousarray(w.transpose(2, 3, 1, 0), np.float32), np.asarray(b, np.float32)))
        in_ch = w.shape[0]
    lin_state = state if lpips_lin is None else read_state_dict(lpips_lin)
    lin = []
    for k, pos in enumerate(TAPS):
        w = lin_state.get(f"lin{k}.model.1.weight", lin_state.get(f"lin{k}.model.0.weight"))
        if w is None:
            if lpips_lin is not None:
                raise InputError(f"{Path(lpips_lin).name}: no LPIPS head lin{k}.model.1.weight")
            break
        channels = convs[pos][0].shape[-1]
        if w.size != channels:
            raise InputError(f"LPIPS head lin{k} has {w.size} weights for {channels} VGG16 channels")
        lin.append(np.asarray(w, np.float32).reshape(channels))
    if lin and len(lin) != len(TAPS):
        raise InputError(f"{name}: found {len(lin)} of the {len(TAPS)} LPIPS heads")
    return {"conv": convs, "lin": lin}


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A torch state dict file as {key: array}; InputError when missing or unreadable."""
    if not Path(path).is_file():
        raise InputError(f"weights file {path} does not exist")
    try:
        obj = read_torch_checkpoint(path)
        if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
            obj = obj["state_dict"]
        flat = flatten_state_dict(obj)
    except CheckpointError as err:
        raise InputError(str(err)) from None
    # nn.DataParallel checkpoints prefix every key with "module.".
    return {k.removeprefix("module."): v for k, v in flat.items()}

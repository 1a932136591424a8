"""One entry for InterFaceGAN-family weight files: an InterFaceGAN `.pth` or NVIDIA's original TF `.pkl`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from converters.interfacegan import KINDS, convert_state_dict
from converters.tf_pickle import convert_tf_pickle
from converters.torch_checkpoint import flatten_state_dict, read_torch_checkpoint
from ifgan_jax.errors import CheckpointError


def convert_generator_file(path: str | os.PathLike, kind: str | None = None) -> tuple[str, Any, dict, dict]:
    """A `.pth` (InterFaceGAN) or `.pkl` (NVIDIA's original TF release) file -> (family, config, params, buffers)."""
    if kind is not None and kind not in KINDS:
        raise CheckpointError(f"unknown generator kind {kind!r}; expected one of {KINDS}")
    path = Path(path)
    if path.suffix.lower() == ".pkl":
        return convert_tf_pickle(path, kind=kind)
    state_dict = flatten_state_dict(read_torch_checkpoint(path))
    try:
        return convert_state_dict(state_dict, kind)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None

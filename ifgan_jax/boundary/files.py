"""Boundary files: a (1, d) .npy as InterFaceGAN's edit.py reads it, written atomically and read checked."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ifgan_jax.boundary.projection import as_row
from ifgan_jax.errors import InputError
from ifgan_jax.files import atomic_save_npy, load_npy

__all__ = ["BOUNDARY_SUFFIX", "boundary_file_name", "boundary_name", "load_boundary", "save_boundary"]

BOUNDARY_SUFFIX = "_boundary.npy"  # InterFaceGAN's name for an attribute's boundary: happy_boundary.npy
NAME_SUFFIXES = (BOUNDARY_SUFFIX, ".npy")  # what a name is read back from: happy_boundary.npy and happy.npy


def boundary_file_name(name: str) -> str:
    """The file name of attribute `name`'s boundary: NAME_boundary.npy."""
    return f"{name}{BOUNDARY_SUFFIX}"


def boundary_name(path: str | os.PathLike) -> str:
    """The attribute a boundary file is named for: happy_boundary.npy and happy.npy -> happy (else the name)."""
    name = Path(path).name
    for suffix in NAME_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def save_boundary(path: str | os.PathLike, boundary: np.ndarray, dtype: Any = np.float32) -> Path:
    """Write a (1, d) boundary .npy atomically (temp file in the same folder, then rename); returns the path."""
    row = as_row(boundary, "boundary")[None].astype(dtype)
    path = Path(path)
    if path.suffix != ".npy":
        raise InputError(f"boundary path must end in .npy, got {path}")
    if not path.parent.is_dir():
        raise InputError(f"output folder {path.parent} does not exist")
    atomic_save_npy(path, row)
    return path


def load_boundary(path: str | os.PathLike) -> np.ndarray:
    """Read a boundary .npy as (1, d), checking shape (1, d) or (d,), finite and nonzero; dtype kept."""
    path = Path(path)
    arr = load_npy(path, "boundary")
    as_row(arr, f"boundary {path.name}")
    return arr.reshape(1, -1)

"""The `project` job: a conditional boundary file, the primal made orthogonal to condition boundary files."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ifgan_jax import files
from ifgan_jax.boundary import load_boundary, project_boundary, save_boundary
from ifgan_jax.errors import InputError


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def run(out: str | os.PathLike, *, primal: str | os.PathLike, conditions: Sequence[str | os.PathLike],
        overwrite: bool = False) -> np.ndarray:
    """Write `out` (.npy, (1, d)): the `primal` boundary file projected off every `conditions` file, unit norm.

    The file is float64 when any input is (InterFaceGAN's published boundaries are), else float32. An existing
    `out` is refused unless `overwrite`. Prints the cosines with the primal and the conditions; returns the
    projected boundary (1, d) float64.
    """
    out = files.output_path(out, "-o")
    if out.suffix != ".npy":
        raise InputError(f"-o must name a .npy file, got {out}")
    if not out.parent.is_dir():
        raise InputError(f"output folder {out.parent} does not exist")
    if out.is_dir():
        raise InputError(f"output {out} is a directory")
    if out.exists() and not overwrite:
        raise InputError(f"output {out} exists; pass --overwrite to replace it")
    files.check_file_name(out.name, "-o file name")
    files.check_writable(out.parent, "output folder")
    primal_row = load_boundary(primal)
    condition_rows = [load_boundary(c) for c in conditions]
    result = project_boundary(primal_row, *condition_rows)
    # Keep float64 when any input is float64 (InterFaceGAN's published boundaries are), else float32.
    dtype = np.result_type(np.float32, primal_row.dtype, *(c.dtype for c in condition_rows))
    save_boundary(out, result, dtype=dtype)
    worst = max(abs(_cosine(result, c)) for c in condition_rows)
    print(f"wrote {out}: cosine with primal {_cosine(result, primal_row):.4f}, "
          f"max |cosine| with conditions {worst:.1e}")
    return result

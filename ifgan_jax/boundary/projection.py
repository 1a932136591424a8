"""Conditional boundaries: a primal boundary made orthogonal to any number of condition boundaries."""

from __future__ import annotations

from typing import Any

import numpy as np

from ifgan_jax.errors import InputError

__all__ = ["as_row", "project_boundary"]


def as_row(b: Any, what: str) -> np.ndarray:
    """A boundary (1, d) or (d,) as a float64 (d,) row; InputError unless real, finite and nonzero."""
    arr = np.asarray(b)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1 or arr.size == 0:
        raise InputError(f"{what} must have shape (1, d) or (d,), got {np.shape(b)}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InputError(f"{what} must be real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise InputError(f"{what} contains non-finite values")
    if not np.any(arr):
        raise InputError(f"{what} is all zeros")
    return arr


def project_boundary(primal: np.ndarray, *conditions: np.ndarray) -> np.ndarray:
    """Primal made orthogonal to every condition (projection onto their orthogonal complement), unit norm.

    Computed in float64 via QR of the conditions, so any number of conditions, unit-norm or not, works;
    returns (1, d) float64. With unit-norm conditions it equals InterFaceGAN's closed forms.
    """
    p = as_row(primal, "primal boundary")
    if not conditions:
        return (p / np.linalg.norm(p))[None]
    conds = [as_row(c, f"condition boundary {i}") for i, c in enumerate(conditions)]
    for i, c in enumerate(conds):
        if c.size != p.size:
            raise InputError(f"condition boundary {i} has dim {c.size}, the primal boundary has dim {p.size}")
    mat = np.stack(conds, axis=1)  # (d, k)
    if mat.shape[1] > p.size:
        raise InputError(f"{mat.shape[1]} conditions in {p.size} dims are linearly dependent")
    q, r = np.linalg.qr(mat / np.linalg.norm(mat, axis=0))
    if np.min(np.abs(np.diag(r))) < 1e-10:
        raise InputError("condition boundaries are linearly dependent (rank deficient); drop the redundant ones")
    new = p - q @ (q.T @ p)
    norm = np.linalg.norm(new)
    if norm < 1e-10 * np.linalg.norm(p):
        raise InputError("primal boundary lies in the span of the conditions; its projection is zero")
    return (new / norm)[None]

"""Conditional boundaries: a primal boundary made orthogonal to any number of condition boundaries."""

from __future__ import annotations

from typing import Any

import numpy as np

from ifgan_jax.errors import InputError

__all__ = ["SPAN_RTOL", "as_row", "project_boundary"]

# Boundaries are stored in float32 (relative rounding ~6e-8 per element) and computed in float32 over up to
# thousands of dimensions (errors up to ~1e-5 of the norm). A direction within this fraction of its norm of a
# span is that span plus rounding: conditions that close to dependent, or a primal that close to their span,
# are refused instead of returning a unit-scaled rounding residue.
SPAN_RTOL = 1e-4


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
    # Singular values of the unit-normalized conditions: the smallest relative to the largest says how close
    # to dependent they are (float32-appropriate, see SPAN_RTOL); U spans the same space for the projection.
    u, sv, _ = np.linalg.svd(mat / np.linalg.norm(mat, axis=0), full_matrices=False)
    if sv[-1] < SPAN_RTOL * sv[0]:
        raise InputError(f"condition boundaries are linearly dependent up to float32 rounding (singular values "
                         f"{sv[-1]:.1e} / {sv[0]:.1e}); drop the redundant ones")
    new = p - u @ (u.T @ p)
    norm = np.linalg.norm(new)
    if norm < SPAN_RTOL * np.linalg.norm(p):
        raise InputError(f"primal boundary lies in the span of the conditions up to float32 rounding (what is left "
                         f"is {norm / np.linalg.norm(p):.1e} of it); there is no conditional direction")
    return (new / norm)[None]

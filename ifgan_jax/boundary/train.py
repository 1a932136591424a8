"""Training semantic boundaries: InterFaceGAN's train_boundary for one attribute or many at once.

`train_boundary` follows InterFaceGAN's `utils/manipulator.py::train_boundary`: rows are sorted by score,
the top K are positives and the bottom K negatives, each split into train/val (`selection.py`), a linear
SVM with C=1 and an intercept is fit on the training rows (`solvers.py`), and its normal (intercept
dropped) scaled to unit length is the boundary. `train_boundaries` does the same for every score column,
with the JAX solver in one program for all of them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from ifgan_jax.boundary.selection import Split, flatten_codes, scores_2d, split_by_score
from ifgan_jax.boundary.solvers import SOLVERS, decision_all, fit_jax, fit_svc
from ifgan_jax.errors import InputError

__all__ = ["BoundaryResult", "TrainedBoundaries", "train_boundaries", "train_boundary"]

# The SVM's margin is 1: a hyperplane whose decision values differ by less than this across the training codes
# separates nothing (identical codes, or codes that do not vary where the classes differ). The float32 solver
# then returns rounding noise (a weight norm of ~1e-6) that unit scaling would present as a boundary; real
# boundaries span several margins (the support vectors alone sit at -1 and +1).
MIN_DECISION_RANGE = 1e-3


@dataclasses.dataclass(frozen=True)
class BoundaryResult:
    """One attribute's boundary (1, D) float32 unit normal towards high scores, raw SVM, split and report."""

    boundary: np.ndarray
    coef: np.ndarray
    intercept: float
    split: Split
    report: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class TrainedBoundaries:
    """K attributes trained together: `boundaries` (K, D) float32, raw `coefs` (K, D), `intercepts` (K,)."""

    boundaries: np.ndarray
    coefs: np.ndarray
    intercepts: np.ndarray
    splits: tuple[Split, ...]
    reports: tuple[dict[str, Any], ...]
    seconds: float

    def __len__(self) -> int:
        return self.boundaries.shape[0]

    def __getitem__(self, k: int) -> BoundaryResult:
        return BoundaryResult(self.boundaries[k : k + 1], self.coefs[k], float(self.intercepts[k]),
                              self.splits[k], self.reports[k])


def _decision_f64(codes: np.ndarray, rows: np.ndarray, w: np.ndarray, b: float, chunk: int = 65536) -> np.ndarray:
    """w . x + b in float64 for codes[rows], chunked so float32 codes are never upcast all at once."""
    w = np.asarray(w, np.float64)
    out = np.empty(rows.size, np.float64)
    for start in range(0, rows.size, chunk):
        part = rows[start : start + chunk]
        out[start : start + part.size] = codes[part] @ w + b
    return out


def _accuracy(decision: np.ndarray, labels: np.ndarray) -> float | None:
    # sklearn's SVC.predict picks class 1 only for a strictly positive decision value.
    return float(np.mean((decision > 0) == (labels == 1))) if labels.size else None


def _span(decision: np.ndarray) -> float:
    return float(np.max(decision) - np.min(decision)) if decision.size else 0.0


def _unit_boundary(coef: np.ndarray) -> np.ndarray:
    # InterFaceGAN: reshape to (1, D), cast to float32, divide by its norm.
    a = np.asarray(coef).reshape(1, -1).astype(np.float32)
    norm = np.linalg.norm(a)
    if not np.isfinite(norm) or norm == 0:
        raise InputError("the SVM returned a zero or non-finite normal; the classes may be identical")
    return a / norm


def train_boundaries(
    codes: np.ndarray,
    scores: np.ndarray,
    *,
    chosen_num_or_ratio: float = 0.02,
    split_ratio: float = 0.7,
    invalid_value: float | None = None,
    solver: str = "jax",
    seed: int | None = 0,
    attribute_batch: int | None = None,
    names: Sequence[str] | None = None,
) -> TrainedBoundaries:
    """One boundary per column of `scores` (N, K) (or (N,)); with solver="jax" all columns in one program.

    Codes may be (N, d) or W+ (N, L, d), flattened to (N, L*d) as InterFaceGAN users do. Every attribute
    gets its own `np.random.RandomState(seed)` for the train/val shuffle (InterFaceGAN after
    `np.random.seed(seed)`). `attribute_batch` caps how many attributes share one program (memory);
    `names` label the columns in error messages.
    """
    if solver not in SOLVERS:
        raise InputError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if attribute_batch is not None and attribute_batch < 1:
        raise InputError(f"attribute_batch must be >= 1, got {attribute_batch}")
    flat = flatten_codes(codes)
    s2 = scores_2d(scores, flat.shape[0])
    if names is not None and len(names) != s2.shape[1]:
        raise InputError(f"{len(names)} attribute names for {s2.shape[1]} score columns")
    splits = []
    for k in range(s2.shape[1]):
        try:
            splits.append(split_by_score(None, s2[:, k], chosen_num_or_ratio, split_ratio, invalid_value, seed))
        except InputError as err:
            label = f"attribute {names[k]!r} (column {k})" if names is not None else f"attribute {k}"
            raise InputError(f"{label}: {err}") from None
    t0 = time.perf_counter()
    a, dim = len(splits), flat.shape[1]
    coefs = np.zeros((a, dim), np.float64)
    intercepts = np.zeros(a, np.float64)
    infos: list[dict[str, Any]] = []
    accs: list[dict[str, float | None]] = []
    spans: list[float] = []  # per attribute: how much the decision value varies over its training rows
    if solver == "svc":
        for sp in splits:
            w, b, info = fit_svc(flat, sp)
            coefs[len(infos)], intercepts[len(infos)] = w, b
            infos.append(info)
            spans.append(_span(_decision_f64(flat, sp.train_idx, w, b)))
            accs.append({name: _accuracy(_decision_f64(flat, idx, w, b), labels) for name, idx, labels in (
                ("train", sp.train_idx, sp.train_labels), ("val", sp.val_idx, sp.val_labels),
                ("remaining", sp.remaining_idx, sp.remaining_labels))})
    else:
        x_all = jnp.asarray(flat, dtype=jnp.float32)
        step = attribute_batch or a
        for start in range(0, a, step):
            part = splits[start : start + step]
            w, b, info = fit_jax(x_all, part)
            coefs[start : start + len(part)], intercepts[start : start + len(part)] = w, b
            infos.extend(info)
            # One (N, A) product on device gives every attribute's decision values for its accuracies.
            dec = np.asarray(decision_all(x_all, jnp.asarray(w), jnp.asarray(b)))
            for k, sp in enumerate(part):
                spans.append(_span(dec[sp.train_idx, k]))
                accs.append({name: _accuracy(dec[idx, k], labels) for name, idx, labels in (
                    ("train", sp.train_idx, sp.train_labels), ("val", sp.val_idx, sp.val_labels),
                    ("remaining", sp.remaining_idx, sp.remaining_labels))})
    seconds = time.perf_counter() - t0
    for k, span in enumerate(spans):
        if not span >= MIN_DECISION_RANGE:
            label = f"attribute {names[k]!r} (column {k})" if names is not None else f"attribute {k}"
            raise InputError(f"{label}: the SVM separates nothing (decision values vary by {span:.1e} over the "
                             f"training codes, weight norm {np.linalg.norm(coefs[k]):.1e}): are the codes (nearly) "
                             "identical?")
    boundaries = np.concatenate([_unit_boundary(c) for c in coefs]) if a else np.zeros((0, dim), np.float32)
    reports = tuple({
        "counts": sp.counts(),
        "accuracy": acc,
        "solver": solver,
        "solver_info": info,
        "intercept": float(intercepts[k]),
        "weight_norm": float(np.linalg.norm(coefs[k])),
        "seed": seed,
        "chosen_num_or_ratio": chosen_num_or_ratio,
        "split_ratio": split_ratio,
        "invalid_value": invalid_value,
    } for k, (sp, acc, info) in enumerate(zip(splits, accs, infos, strict=True)))
    return TrainedBoundaries(boundaries, coefs, intercepts, tuple(splits), reports, seconds)


def train_boundary(
    codes: np.ndarray,
    scores: np.ndarray,
    *,
    chosen_num_or_ratio: float = 0.02,
    split_ratio: float = 0.7,
    invalid_value: float | None = None,
    solver: str = "jax",
    seed: int | None = 0,
) -> BoundaryResult:
    """InterFaceGAN's train_boundary for one attribute; `scores` is (N,) or (N, 1), boundary is (1, D)."""
    s = np.asarray(scores)
    if s.ndim == 2 and s.shape[1] != 1 or s.ndim not in (1, 2):
        raise InputError(f"scores must have shape (N,) or (N, 1) for one attribute, got {s.shape}; "
                         f"use train_boundaries for (N, K)")
    return train_boundaries(codes, s, chosen_num_or_ratio=chosen_num_or_ratio, split_ratio=split_ratio,
                            invalid_value=invalid_value, solver=solver, seed=seed)[0]

"""Semantic boundaries: InterFaceGAN's top/bottom split, linear SVMs (one per attribute), projection, I/O.

`train_boundary` follows InterFaceGAN's `utils/manipulator.py::train_boundary`: rows are sorted by score,
the top K are positives and the bottom K negatives, each split into train/val, a linear SVM with C=1 and an
intercept is fit on the training rows, and its normal (intercept dropped) scaled to unit length is the
boundary. Two solvers give the same hyperplane:

* ``"svc"``: scikit-learn's ``SVC(kernel="linear", C=1)``, exactly what InterFaceGAN runs;
* ``"jax"``: a batched primal solver for the same objective, all attributes in one jitted program
  (vmapped over attributes, one `lax.while_loop`, no Python loop per iteration).

The JAX solver minimises 0.5 |w|^2 + C sum_i L_tau(y_i (w . x_i + b)) on the raw codes, with L_tau the
softplus-smoothed hinge tau log(1 + exp((1 - m) / tau)), which tends to the hinge uniformly (within
tau log 2) as tau -> 0. It follows the solution path over tau = 0.3 ... 0.003 (interior-point style): at
each tau, Newton steps with an exact line search; between taus, one predictor step along the path's
tangent. The Hessian only has weight near the margin, so it is built from the heaviest 4d rows (exact in the
last stages, where the band is narrow). The intercept is then set to the exact hinge minimiser for the final
w (the midpoint of the optimal interval when it is not unique, as libsvm reports). Everything runs in
float32; Jacobi-scaled Cholesky keeps the Newton systems accurate.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ifgan_jax.errors import InputError
from ifgan_jax.files import atomic_save_npy

__all__ = [
    "BoundaryResult",
    "LinearBoundary",
    "Split",
    "TrainedBoundaries",
    "load_boundary",
    "project_boundary",
    "save_boundary",
    "split_by_score",
    "train_boundaries",
    "train_boundary",
]

SOLVERS = ("jax", "svc")
SVM_C = 1.0  # InterFaceGAN uses sklearn's default C=1 on raw codes

# Softplus-smoothed hinge: tau * log(1 + exp((1 - m) / tau)) -> max(0, 1 - m) as tau -> 0, uniformly within
# tau * log 2. The solution follows the smooth central path tau -> 0; 0.003 puts it within ~1e-5 (cosine) of
# the exact hinge solution, below libsvm's own stopping tolerance (1e-3 on the KKT conditions).
_TAUS = (0.3, 0.1, 0.03, 0.01, 0.003)
# Newton decrement / (1 + |w|^2) that ends a stage: path following only needs to stay near the path, the
# last stage is solved tightly.
_STAGE_TOL = (1e-2, 1e-2, 1e-2, 1e-2, 1e-5)
_STAGE_MAXIT = (40, 20, 20, 20, 30)


# -- data selection ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Split:
    """InterFaceGAN's selection for one attribute, as row indices into the caller's `codes`.

    Training rows are the positive rows then the negative rows (labels 1 then 0), in the order InterFaceGAN
    feeds them to the SVM; the same holds for validation rows. Remaining rows are labelled 1 where their
    score is >= (max + min) / 2 of the valid scores.
    """

    train_idx: np.ndarray
    train_labels: np.ndarray
    val_idx: np.ndarray
    val_labels: np.ndarray
    remaining_idx: np.ndarray
    remaining_labels: np.ndarray
    chosen_num: int
    train_num: int
    val_num: int
    num_samples: int
    num_invalid: int
    num_nonfinite: int

    def counts(self) -> dict[str, int]:
        """Counts for reports: rows used for train/val/remaining and rows dropped."""
        return {
            "total": self.num_samples,
            "valid": self.num_samples - self.num_invalid - self.num_nonfinite,
            "chosen_per_class": self.chosen_num,
            "train": int(self.train_idx.size),
            "val": int(self.val_idx.size),
            "remaining": int(self.remaining_idx.size),
            "invalid": self.num_invalid,
            "nonfinite": self.num_nonfinite,
        }


def _chosen_num(num_valid: int, chosen_num_or_ratio: float) -> int:
    # InterFaceGAN: a ratio when in (0, 1], else a count; never more than half of the valid rows per class.
    if 0 < chosen_num_or_ratio <= 1:
        chosen = int(num_valid * chosen_num_or_ratio)
    else:
        chosen = int(chosen_num_or_ratio)
    return min(chosen, num_valid // 2)


def _check_split_args(chosen_num_or_ratio: float, split_ratio: float, seed: int | None = None) -> None:
    if seed is not None and (not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**32):
        raise InputError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    if not np.isfinite(chosen_num_or_ratio) or chosen_num_or_ratio <= 0:
        raise InputError(f"chosen_num_or_ratio must be positive, got {chosen_num_or_ratio}")
    if not np.isfinite(split_ratio) or not 0 < split_ratio <= 1:
        raise InputError(f"split_ratio must be in (0, 1], got {split_ratio}")


def split_by_score(
    codes: np.ndarray | None,
    scores: np.ndarray,
    chosen_num_or_ratio: float = 0.02,
    split_ratio: float = 0.7,
    invalid_value: float | None = None,
    seed: int | None = 0,
) -> Split:
    """InterFaceGAN's top/bottom-K selection for one attribute; `scores` is (N,) or (N, 1).

    Rows whose score equals `invalid_value`, and always rows with a non-finite score, are dropped first.
    InterFaceGAN shuffles with the global `np.random`; here `np.random.RandomState(seed)` shuffles the
    positives then the negatives, which is the same permutation InterFaceGAN draws after `np.random.seed(seed)`.
    `codes` (or None) is only used to check that N matches.
    """
    s = np.asarray(scores)
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    if s.ndim != 1:
        raise InputError(f"scores must have shape (N,) or (N, 1) for one attribute, got {s.shape}")
    if codes is not None and np.shape(codes)[0] != s.shape[0]:
        raise InputError(f"codes have N={np.shape(codes)[0]} rows but scores have N={s.shape[0]}")
    if not np.issubdtype(s.dtype, np.number) or np.issubdtype(s.dtype, np.complexfloating):
        raise InputError(f"scores must be real numbers, got dtype {s.dtype}")
    _check_split_args(chosen_num_or_ratio, split_ratio, seed)
    n_total = s.shape[0]
    finite = np.isfinite(s)
    keep = finite.copy()
    num_invalid = 0
    if invalid_value is not None:
        is_invalid = finite & (s == invalid_value)
        num_invalid = int(is_invalid.sum())
        keep &= ~is_invalid
    num_nonfinite = int(n_total - finite.sum())
    rows = np.flatnonzero(keep)
    valid_scores = s[rows]
    # Same call as InterFaceGAN (argsort of an (N, 1) column, reversed) so ties land in the same order.
    order = np.argsort(valid_scores[:, None], axis=0)[::-1, 0]
    rows, sorted_scores = rows[order], valid_scores[order]
    n = rows.size
    chosen = _chosen_num(n, chosen_num_or_ratio)
    train_num = int(chosen * split_ratio)
    if chosen < 1 or train_num < 1:
        raise InputError(
            f"too few valid samples: {n} valid scores (of {n_total}; {num_invalid} invalid, {num_nonfinite} "
            f"non-finite) give {chosen} per class and {train_num} training rows per class with "
            f"chosen_num_or_ratio={chosen_num_or_ratio}, split_ratio={split_ratio}; need at least 1")
    if sorted_scores[0] == sorted_scores[-1]:
        raise InputError(f"scores have zero variance over the {n} valid rows (all {sorted_scores[0]})")
    val_num = chosen - train_num
    rng = np.random.RandomState(seed) if seed is not None else np.random.RandomState()
    pos_perm = np.arange(chosen)
    rng.shuffle(pos_perm)
    neg_perm = np.arange(chosen)
    rng.shuffle(neg_perm)
    pos_rows, neg_rows = rows[:chosen][pos_perm], rows[n - chosen:][neg_perm]
    train_idx = np.concatenate([pos_rows[:train_num], neg_rows[:train_num]])
    val_idx = np.concatenate([pos_rows[train_num:], neg_rows[train_num:]])
    remaining_idx = rows[chosen:n - chosen]
    # InterFaceGAN's threshold: midpoint of the highest and lowest valid score, in the scores' own dtype.
    decision = (sorted_scores[0] + sorted_scores[-1]) / 2
    remaining_labels = np.ones(remaining_idx.size, dtype=np.int64)
    remaining_labels[sorted_scores[chosen:n - chosen] < decision] = 0
    return Split(
        train_idx=train_idx,
        train_labels=np.r_[np.ones(train_num, np.int64), np.zeros(train_num, np.int64)],
        val_idx=val_idx,
        val_labels=np.r_[np.ones(val_num, np.int64), np.zeros(val_num, np.int64)],
        remaining_idx=remaining_idx,
        remaining_labels=remaining_labels,
        chosen_num=chosen,
        train_num=train_num,
        val_num=val_num,
        num_samples=n_total,
        num_invalid=num_invalid,
        num_nonfinite=num_nonfinite,
    )


# -- the batched JAX solver --------------------------------------------------------------------------------


def _smooth_hinge(m: jax.Array, tau: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Loss, first and second derivative in m, and u = (1 - m) / tau of the softplus-smoothed hinge."""
    u = (1.0 - m) / tau
    sig = jax.nn.sigmoid(u)
    return tau * jax.nn.softplus(u), -sig, sig * (1.0 - sig) / tau, u


def _line_search(m, s, mask, reg0, reg1, tau, c, iters: int = 6):
    """Step in [0, 1] minimising the convex phi(t) = reg(t) + c * sum L(m + t s): 1 when phi'(1) <= 0, else
    safeguarded 1-D Newton on phi' inside a shrinking bracket (a few iterations: phi is smooth).

    reg'(t) = reg0 + t * reg1 is the regulariser's derivative along the direction.
    """

    def derivs(t):
        _, lp, lpp, _ = _smooth_hinge(m + t * s, tau)
        return reg0 + t * reg1 + c * jnp.sum(mask * lp * s), reg1 + c * jnp.sum(mask * lpp * s * s)

    one = jnp.ones_like(reg0)
    d1, _ = derivs(one)

    def body(_, carry):
        t, lo, hi = carry
        d, dd = derivs(t)
        lo, hi = jnp.where(d < 0, t, lo), jnp.where(d < 0, hi, t)
        t_new = t - d / jnp.maximum(dd, 1e-30)
        inside = (t_new > lo) & (t_new < hi)
        return jnp.where(inside, t_new, 0.5 * (lo + hi)), lo, hi

    t, _, _ = jax.lax.fori_loop(0, iters, body, (one, jnp.zeros_like(reg0), one))
    return jnp.where(d1 <= 0, one, t)


def _solve_one(x_all, idx, y, mask, *, hess_rows: int, c: float):
    """Fit one attribute: softplus-smoothed hinge SVM, Newton steps along a decreasing tau schedule.

    x_all (N, D) float32 is shared by all attributes; idx (n,) picks the training rows, y (n,) is +-1 and
    mask (n,) is 0 on padding. Returns w (D,), b, and diagnostics.
    """
    taus = jnp.asarray(_TAUS, jnp.float32)
    tols = jnp.asarray(_STAGE_TOL, jnp.float32)
    maxits = jnp.asarray(_STAGE_MAXIT, jnp.int32)
    last = len(_TAUS) - 1
    x = x_all[idx]  # (n, D) training rows of this attribute
    d = x.shape[1]
    pos, neg = mask * (y > 0), mask * (y < 0)

    # Start: difference of class means, then the best (scale, bias) for that direction at the first tau.
    w0 = x.T @ pos / jnp.maximum(pos.sum(), 1.0) - x.T @ neg / jnp.maximum(neg.sum(), 1.0)
    w0 = w0 / jnp.maximum(jnp.linalg.norm(w0), 1e-30)
    proj = x @ w0
    gap = (proj @ pos / jnp.maximum(pos.sum(), 1.0)) - (proj @ neg / jnp.maximum(neg.sum(), 1.0))
    mid = 0.5 * ((proj @ pos / jnp.maximum(pos.sum(), 1.0)) + (proj @ neg / jnp.maximum(neg.sum(), 1.0)))
    q = jnp.stack([2.0 / jnp.maximum(gap, 1e-6), -2.0 * mid / jnp.maximum(gap, 1e-6)])
    feats = jnp.stack([y * proj, y], axis=1)  # margins are feats @ q in this 2-D sub-problem

    def init_step(_, q):
        m = feats @ q
        _, lp, lpp, _ = _smooth_hinge(m, taus[0])
        g = jnp.stack([q[0], 0.0]) + c * feats.T @ (mask * lp)
        h = jnp.diag(jnp.stack([1.0, 1e-6])) + c * (feats * (mask * lpp)[:, None]).T @ feats
        p = -jnp.linalg.solve(h, g)
        s = feats @ p
        t = _line_search(m, s, mask, q[0] * p[0], p[0] * p[0], taus[0], c)
        return q + t * p

    q = jax.lax.fori_loop(0, 10, init_step, q)  # converges in about 8
    theta = jnp.concatenate([q[0] * w0, q[1:]])
    margins = y * (x @ theta[:d] + theta[d])

    eye_b = jnp.concatenate([jnp.ones(d, jnp.float32), jnp.full((1,), 1e-6, jnp.float32)])
    n_hess = min(hess_rows, x.shape[0])

    def newton_direction(margins, tau, coef, extra):
        """-H^-1 (Z^T coef + extra) with H the Hessian at `margins` for smoothing `tau`."""
        _, _, lpp, _ = _smooth_hinge(margins, tau)
        weight = mask * lpp
        g = jnp.concatenate([x.T @ (y * coef), jnp.sum(y * coef)[None]]) + extra
        # Hessian weight decays like exp(-|1 - m| / tau) away from the margin: the heaviest n_hess rows
        # enter exactly, scaled up to the total weight so a wide early band still gets a sound step size;
        # the narrow band of the last stages fits in n_hess rows, where this is the exact Hessian.
        top_w, top_i = jax.lax.top_k(weight, n_hess)
        top_w = top_w * (c * jnp.sum(weight) / jnp.maximum(jnp.sum(top_w), 1e-30))
        # Rows scaled by sqrt(weight) as they are gathered (one fused pass); the bias block comes from the
        # same rows, so H = [[Y^T Y, Y^T r], [r^T Y, r^T r]] + I_w with r = sqrt(weight).
        root = jnp.sqrt(top_w)
        ys = jnp.take(x, top_i, axis=0, mode="clip") * root[:, None]
        h_wb = ys.T @ root
        h = jnp.block([[ys.T @ ys, h_wb[:, None]], [h_wb[None, :], jnp.sum(top_w)[None, None]]]) + jnp.diag(eye_b)
        # Jacobi scaling before Cholesky keeps float32 factorisation accurate on badly scaled codes.
        dsc = jax.lax.rsqrt(jnp.diag(h))
        chol = jnp.linalg.cholesky(h * dsc[:, None] * dsc[None, :])
        p = -dsc * jax.scipy.linalg.cho_solve((chol, True), dsc * g)
        ok = jnp.all(jnp.isfinite(p))
        return jnp.where(ok, p, -g / jnp.max(jnp.diag(h))), g

    def cond(state):
        return ~state["done"]

    def body(state):
        theta, margins, k = state["theta"], state["margins"], state["stage"]
        pred = state["predict"]
        tau = taus[k]
        tau_prev = taus[jnp.maximum(k - 1, 0)]
        tau_eval = jnp.where(pred, tau_prev, tau)
        _, lp, lpp, u = _smooth_hinge(margins, tau_eval)
        # Predictor: tangent of the central path, d theta / d tau * (tau - tau_prev), using that
        # d/dtau of the loss gradient is c * sum lpp * u * z_i. Corrector: a Newton step at tau.
        coef = jnp.where(pred, c * mask * lpp * u * (tau - tau_prev), c * mask * lp)
        extra = jnp.where(pred, 0.0, 1.0) * jnp.concatenate([theta[:d], jnp.zeros((1,), theta.dtype)])
        p, g = newton_direction(margins, tau_eval, coef, extra)
        s = y * (x @ p[:d] + p[d])
        t = jnp.where(pred, 1.0, _line_search(margins, s, mask, theta[:d] @ p[:d], p[:d] @ p[:d], tau, c))
        theta = theta + t * p
        margins = margins + t * s
        dec = -(g @ p)
        it = state["iter"] + 1
        converged = (~pred) & (dec <= tols[k] * (1.0 + theta[:d] @ theta[:d]))
        stage_over = (~pred) & (converged | (it >= maxits[k]))
        at_last = k == last
        return {
            "theta": theta,
            "margins": margins,
            "stage": jnp.where(stage_over & ~at_last, k + 1, k),
            "predict": stage_over & ~at_last,
            "iter": jnp.where(stage_over | pred, 0, it),
            "done": stage_over & at_last,
            "converged": converged,
            "decrement": jnp.where(pred, state["decrement"], dec),
            "steps": state["steps"] + 1,
            "stage_steps": state["stage_steps"].at[k].add(1),
        }

    state = {
        "theta": theta, "margins": margins, "stage": jnp.int32(0), "predict": jnp.bool_(False),
        "iter": jnp.int32(0), "done": jnp.bool_(False), "converged": jnp.bool_(False),
        "decrement": jnp.float32(jnp.inf), "steps": jnp.int32(0),
        "stage_steps": jnp.zeros(len(_TAUS), jnp.int32),
    }
    state = jax.lax.while_loop(cond, body, state)
    info = {k: state[k] for k in ("steps", "converged", "decrement", "stage_steps")}
    w = state["theta"][:d]
    return w, _exact_intercept(x @ w, y, mask, state["theta"][d]), info


def _exact_intercept(f, y, mask, fallback):
    """The intercept minimising the exact hinge loss for fixed w (f = X w): midpoint of the minimiser set.

    The hinge objective is piecewise linear in b with kinks at y_i - f_i; when it is flat (no margin support
    vector pins b: every chosen row inside the margin, which happens on strongly regularised data) any b
    in the flat stretch is optimal and the smoothed solution's b is arbitrary. libsvm then reports the
    midpoint of that stretch, and so does this; otherwise the minimiser is the kink where the slope turns.
    """
    kinks = jnp.where(mask > 0, y - f, jnp.inf)
    order = jnp.argsort(kinks)
    ks, ys, ms = kinks[order], y[order], mask[order]
    pos_seen = jnp.cumsum(ms * (ys > 0))
    neg_seen = jnp.cumsum(ms * (ys < 0))
    # Slope just right of each kink: positives still inside their margin pull b up, negatives push it down.
    slope = -(pos_seen[-1] - pos_seen) + neg_seen
    lo = ks[jnp.argmax(slope >= 0)]
    hi = ks[jnp.argmax(slope > 0)]
    b = 0.5 * (lo + hi)
    return jnp.where(jnp.isfinite(b), b, fallback)


@functools.partial(jax.jit, static_argnames=("hess_rows",))
def _fit_batch(x_all, idx, y, mask, hess_rows: int):
    solve = functools.partial(_solve_one, hess_rows=hess_rows, c=SVM_C)
    return jax.vmap(solve, in_axes=(None, 0, 0, 0))(x_all, idx, y, mask)


def _hess_rows(n_train: int, dim: int) -> int:
    # Margin support vectors number at most dim + 1 in general position. About four times that keeps the
    # Newton steps near-exact through the wide early bands. On 40 attributes of 500K x 512 codes: 1024 rows
    # needed up to 35 steps, 1536 up to 25, 2048 and 3072 up to 19, and 2048 was fastest overall.
    return int(min(n_train, max(1024, 4 * dim)))


def _single_threaded_lapack() -> Any:
    """Limit OpenBLAS (which XLA's CPU Cholesky calls) to one thread while the solver runs.

    A 513 x 513 factorisation gains nothing from threads, and on a busy machine OpenBLAS's spinning
    worker threads made each one ~200x slower (0.35 s instead of 1.5 ms) in our measurements.
    """
    try:
        # jaxlib's CPU LAPACK comes from scipy's OpenBLAS: load it first, or threadpoolctl (which only sees
        # libraries already loaded) would leave the first call unlimited.
        import scipy.linalg.cython_lapack  # noqa: F401
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn depends on both, so this is rare: run unlimited
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _fit_jax(x_all: jax.Array, splits: list[Split]) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Fit every split in one jitted, vmapped program; returns W (A, D), b (A,) and per-attribute info."""
    n_pad = max(2 * sp.train_num for sp in splits)
    a = len(splits)
    idx = np.zeros((a, n_pad), np.int32)
    y = np.zeros((a, n_pad), np.float32)
    mask = np.zeros((a, n_pad), np.float32)
    for k, sp in enumerate(splits):
        n = sp.train_idx.size
        idx[k, :n] = sp.train_idx
        y[k, :n] = 2.0 * sp.train_labels - 1.0
        mask[k, :n] = 1.0
    with _single_threaded_lapack():
        out = _fit_batch(x_all, idx, y, mask, hess_rows=_hess_rows(n_pad, x_all.shape[1]))
        w, b, raw = jax.device_get(out)  # wait inside: LAPACK runs during execution
    info = [{"newton_steps": int(raw["steps"][k]), "steps_per_tau": [int(v) for v in raw["stage_steps"][k]],
             "converged": bool(raw["converged"][k]), "final_decrement": float(raw["decrement"][k]),
             "final_tau": _TAUS[-1]} for k in range(a)]
    return w, b, info


# -- training ----------------------------------------------------------------------------------------------


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


def _flatten_codes(codes: Any) -> np.ndarray:
    """Codes (N, D) or W+ (N, L, d) -> (N, D) real array, checked finite."""
    if isinstance(codes, jax.Array):
        codes = np.asarray(codes)
    if not isinstance(codes, np.ndarray):
        raise InputError(f"codes must be a numpy array of shape (N, d) or (N, L, d), got {type(codes).__name__}")
    if codes.ndim not in (2, 3):
        raise InputError(f"codes must have shape (N, d) or W+ (N, L, d), got {codes.shape}")
    if not np.issubdtype(codes.dtype, np.floating):
        if not np.issubdtype(codes.dtype, np.integer):
            raise InputError(f"codes must be real numbers, got dtype {codes.dtype}")
        codes = codes.astype(np.float32)
    flat = codes.reshape(codes.shape[0], -1)
    if flat.shape[0] < 2 or flat.shape[1] < 1:
        raise InputError(f"codes need at least 2 rows and 1 dimension, got {codes.shape}")
    bad = ~np.isfinite(flat).all(axis=1)
    if bad.any():
        raise InputError(f"codes contain non-finite values in {int(bad.sum())} rows (first: row "
                         f"{int(np.flatnonzero(bad)[0])}); remove them or their scores")
    return flat


def _scores_2d(scores: Any, n: int) -> np.ndarray:
    s = np.asarray(scores)
    if s.ndim == 1:
        s = s[:, None]
    if s.ndim != 2 or s.shape[1] < 1:
        raise InputError(f"scores must have shape (N,) or (N, K), got {s.shape}")
    if s.shape[0] != n:
        raise InputError(f"codes have N={n} rows but scores have N={s.shape[0]}; they must match")
    if not (np.issubdtype(s.dtype, np.floating) or np.issubdtype(s.dtype, np.integer)):
        raise InputError(f"scores must be real numbers, got dtype {s.dtype}")
    return s


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


def _unit_boundary(coef: np.ndarray) -> np.ndarray:
    # InterFaceGAN: reshape to (1, D), cast to float32, divide by its norm.
    a = np.asarray(coef).reshape(1, -1).astype(np.float32)
    norm = np.linalg.norm(a)
    if not np.isfinite(norm) or norm == 0:
        raise InputError("the SVM returned a zero or non-finite normal; the classes may be identical")
    return a / norm


def _fit_svc(codes: np.ndarray, split: Split) -> tuple[np.ndarray, float, dict[str, Any]]:
    from sklearn import svm

    clf = svm.SVC(kernel="linear", C=SVM_C)
    clf.fit(codes[split.train_idx], split.train_labels)
    return clf.coef_.reshape(-1), float(clf.intercept_[0]), {"n_support": [int(v) for v in clf.n_support_]}


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
    flat = _flatten_codes(codes)
    s2 = _scores_2d(scores, flat.shape[0])
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
    if solver == "svc":
        for sp in splits:
            w, b, info = _fit_svc(flat, sp)
            coefs[len(infos)], intercepts[len(infos)] = w, b
            infos.append(info)
            accs.append({name: _accuracy(_decision_f64(flat, idx, w, b), labels) for name, idx, labels in (
                ("train", sp.train_idx, sp.train_labels), ("val", sp.val_idx, sp.val_labels),
                ("remaining", sp.remaining_idx, sp.remaining_labels))})
    else:
        x_all = jnp.asarray(flat, dtype=jnp.float32)
        step = attribute_batch or a
        for start in range(0, a, step):
            part = splits[start : start + step]
            w, b, info = _fit_jax(x_all, part)
            coefs[start : start + len(part)], intercepts[start : start + len(part)] = w, b
            infos.extend(info)
            # One (N, A) product on device gives every attribute's decision values for its accuracies.
            dec = np.asarray(_decision_all(x_all, jnp.asarray(w), jnp.asarray(b)))
            for k, sp in enumerate(part):
                accs.append({name: _accuracy(dec[idx, k], labels) for name, idx, labels in (
                    ("train", sp.train_idx, sp.train_labels), ("val", sp.val_idx, sp.val_labels),
                    ("remaining", sp.remaining_idx, sp.remaining_labels))})
    seconds = time.perf_counter() - t0
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


@jax.jit
def _decision_all(x_all: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    return x_all @ w.T.astype(x_all.dtype) + b.astype(x_all.dtype)


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


class LinearBoundary:
    """scikit-learn-style estimator around `train_boundaries`: fit, decision_function, score."""

    def __init__(self, chosen_num_or_ratio: float = 0.02, split_ratio: float = 0.7,
                 invalid_value: float | None = None, solver: str = "jax", seed: int | None = 0) -> None:
        self.chosen_num_or_ratio = chosen_num_or_ratio
        self.split_ratio = split_ratio
        self.invalid_value = invalid_value
        self.solver = solver
        self.seed = seed

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters, as scikit-learn estimators report them."""
        return {"chosen_num_or_ratio": self.chosen_num_or_ratio, "split_ratio": self.split_ratio,
                "invalid_value": self.invalid_value, "solver": self.solver, "seed": self.seed}

    def set_params(self, **params: Any) -> LinearBoundary:
        """Set constructor parameters; unknown names raise InputError."""
        for key, value in params.items():
            if key not in self.get_params():
                raise InputError(f"unknown parameter {key!r} for LinearBoundary")
            setattr(self, key, value)
        return self

    def fit(self, codes: np.ndarray, scores: np.ndarray) -> LinearBoundary:
        """Train on codes (N, d) or (N, L, d) and scores (N,) or (N, K)."""
        trained = train_boundaries(codes, scores, chosen_num_or_ratio=self.chosen_num_or_ratio,
                                   split_ratio=self.split_ratio, invalid_value=self.invalid_value,
                                   solver=self.solver, seed=self.seed)
        self._single = np.ndim(scores) == 1
        self.boundary_ = trained.boundaries
        self.coef_ = trained.coefs
        self.intercept_ = trained.intercepts
        self.report_ = trained.reports[0] if self._single else list(trained.reports)
        self.n_features_in_ = trained.boundaries.shape[1]
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise InputError("LinearBoundary is not fitted yet; call fit(codes, scores) first")

    def decision_function(self, codes: np.ndarray) -> np.ndarray:
        """Raw SVM values w . x + b: (N,) after fitting (N,) scores, else (N, K)."""
        self._check_fitted()
        flat = _flatten_codes(np.asarray(codes))
        if flat.shape[1] != self.n_features_in_:
            raise InputError(f"codes have {flat.shape[1]} dims (flattened), the boundary has {self.n_features_in_}")
        out = np.empty((flat.shape[0], self.coef_.shape[0]), np.float64)
        for start in range(0, flat.shape[0], 65536):  # float64 products without a float64 copy of all codes
            out[start : start + 65536] = flat[start : start + 65536].astype(np.float64) @ self.coef_.T
        out += self.intercept_
        return out[:, 0] if self._single else out

    def score(self, codes: np.ndarray, scores: np.ndarray) -> float:
        """Accuracy on the top/bottom-K rows of (codes, scores) chosen as in training (mean over attributes)."""
        self._check_fitted()
        dec = self.decision_function(codes)
        dec = dec[:, None] if dec.ndim == 1 else dec
        s2 = _scores_2d(scores, dec.shape[0])
        if s2.shape[1] != dec.shape[1]:
            raise InputError(f"scores have {s2.shape[1]} columns, the estimator was fit on {dec.shape[1]}")
        accs = []
        for k in range(s2.shape[1]):
            sp = split_by_score(None, s2[:, k], self.chosen_num_or_ratio, 1.0, self.invalid_value, self.seed)
            accs.append(_accuracy(dec[sp.train_idx, k], sp.train_labels))
        return float(np.mean(accs))


# -- conditional boundaries and files ----------------------------------------------------------------------


def _as_row(b: Any, what: str) -> np.ndarray:
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
    p = _as_row(primal, "primal boundary")
    if not conditions:
        return (p / np.linalg.norm(p))[None]
    conds = [_as_row(c, f"condition boundary {i}") for i, c in enumerate(conditions)]
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


def save_boundary(path: str | os.PathLike, boundary: np.ndarray, dtype: Any = np.float32) -> Path:
    """Write a (1, d) boundary .npy atomically (temp file in the same folder, then rename); returns the path."""
    row = _as_row(boundary, "boundary")[None].astype(dtype)
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
    if not path.is_file():
        raise InputError(f"boundary file {path} does not exist")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise InputError(f"cannot read boundary file {path}: {err}") from None
    _as_row(arr, f"boundary {path.name}")
    return arr.reshape(1, -1)

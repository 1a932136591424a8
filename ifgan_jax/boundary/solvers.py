"""The two solvers for InterFaceGAN's boundary SVM: scikit-learn's SVC (the reference) and a batched JAX one.

Both fit a linear SVM with C=1 and an intercept on a `Split`'s training rows and give the same hyperplane:

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
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ifgan_jax.boundary.selection import Split

__all__ = ["SOLVERS", "SVM_C", "decision_all", "fit_jax", "fit_svc"]

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


def _initial_theta(x, y, mask, tau, c: float):
    """The start: the difference of class means, then the best (scale, bias) for that direction at the first
    tau (a 2-D Newton problem). Returns theta (D + 1,) and the margins y * (x @ w + b)."""
    d = x.shape[1]
    pos, neg = mask * (y > 0), mask * (y < 0)
    w0 = x.T @ pos / jnp.maximum(pos.sum(), 1.0) - x.T @ neg / jnp.maximum(neg.sum(), 1.0)
    w0 = w0 / jnp.maximum(jnp.linalg.norm(w0), 1e-30)
    proj = x @ w0
    gap = (proj @ pos / jnp.maximum(pos.sum(), 1.0)) - (proj @ neg / jnp.maximum(neg.sum(), 1.0))
    mid = 0.5 * ((proj @ pos / jnp.maximum(pos.sum(), 1.0)) + (proj @ neg / jnp.maximum(neg.sum(), 1.0)))
    q = jnp.stack([2.0 / jnp.maximum(gap, 1e-6), -2.0 * mid / jnp.maximum(gap, 1e-6)])
    feats = jnp.stack([y * proj, y], axis=1)  # margins are feats @ q in this 2-D sub-problem

    def init_step(_, q):
        m = feats @ q
        _, lp, lpp, _ = _smooth_hinge(m, tau)
        g = jnp.stack([q[0], 0.0]) + c * feats.T @ (mask * lp)
        h = jnp.diag(jnp.stack([1.0, 1e-6])) + c * (feats * (mask * lpp)[:, None]).T @ feats
        p = -jnp.linalg.solve(h, g)
        s = feats @ p
        t = _line_search(m, s, mask, q[0] * p[0], p[0] * p[0], tau, c)
        return q + t * p

    q = jax.lax.fori_loop(0, 10, init_step, q)  # converges in about 8
    theta = jnp.concatenate([q[0] * w0, q[1:]])
    return theta, y * (x @ theta[:d] + theta[d])


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
    theta, margins = _initial_theta(x, y, mask, taus[0], c)

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


def fit_jax(x_all: jax.Array, splits: list[Split]) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
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


@jax.jit
def decision_all(x_all: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """Decision values (N, A) of A hyperplanes (w (A, D), b (A,)) on every code, in the codes' dtype."""
    return x_all @ w.T.astype(x_all.dtype) + b.astype(x_all.dtype)


# -- the scikit-learn reference ----------------------------------------------------------------------------


def fit_svc(codes: np.ndarray, split: Split) -> tuple[np.ndarray, float, dict[str, Any]]:
    """InterFaceGAN's own fit: sklearn's SVC(kernel="linear", C=1) on the split's training rows; w, b, info."""
    from sklearn import svm  # imported only when this solver is chosen (scikit-learn is slow to import)

    clf = svm.SVC(kernel="linear", C=SVM_C)
    clf.fit(codes[split.train_idx], split.train_labels)
    return clf.coef_.reshape(-1), float(clf.intercept_[0]), {"n_support": [int(v) for v in clf.n_support_]}


"""The predictor contract: images (N, H, W, 3) in [-1, 1] -> (N, K) float32 scores with K named columns.

`Predictor.apply(params, images)` is pure and jittable; calling the predictor runs it jitted with input
checks. Any function is a plug-in (`predictor_from_function`); several predictors fuse into one
(`combine_predictors`), their columns concatenated in order.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ifgan_jax.errors import InputError
from ifgan_jax.images import to_float_on_device


@dataclasses.dataclass(frozen=True, eq=False)
class Predictor:
    """A named attribute predictor: `apply(params, images) -> (N, len(labels))` scores."""

    name: str
    labels: tuple[str, ...]
    params: Any
    apply: Callable[[Any, jax.Array], jax.Array]
    jit: bool = True  # False for plug-ins that are not traceable (e.g. numpy code)
    _run: Callable[[Any, jax.Array], jax.Array] = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.labels:
            raise InputError(f"predictor {self.name!r} needs at least one label")
        # One jitted wrapper per predictor, so repeated calls reuse the compiled executable.
        object.__setattr__(self, "_run", jax.jit(self.apply) if self.jit else self.apply)

    def __call__(self, images: Any, *, batch_size: int | None = None) -> jax.Array:
        """Scores (N, K) float32 for RGB NHWC images in [-1, 1] (uint8 in [0, 255] is also accepted).

        `batch_size` bounds memory: the batch is run in chunks (the last one padded, so one compile).
        """
        x = check_images(images)
        n, k = x.shape[0], len(self.labels)
        if n == 0:
            return jnp.zeros((0, k), jnp.float32)
        if batch_size is None or n <= batch_size:
            return self._check_scores(self._run(self.params, x), n)
        if batch_size < 1:
            raise InputError(f"batch_size must be positive, got {batch_size}")
        chunks = []
        for start in range(0, n, batch_size):
            chunk = x[start : start + batch_size]
            real = chunk.shape[0]
            if real < batch_size:
                pad = jnp.zeros((batch_size - real, *chunk.shape[1:]), chunk.dtype)
                chunk = jnp.concatenate([chunk, pad])
            chunks.append(self._check_scores(self._run(self.params, chunk), batch_size)[:real])
        return jnp.concatenate(chunks)

    def _check_scores(self, scores: Any, n: int) -> jax.Array:
        scores = jnp.asarray(scores, jnp.float32)
        k = len(self.labels)
        if scores.ndim == 1 and k == 1:
            scores = scores[:, None]
        if scores.shape != (n, k):
            raise InputError(f"predictor {self.name!r} returned shape {scores.shape}, expected {(n, k)}")
        return scores


def check_images(images: Any) -> jax.Array:
    """Validate an RGB NHWC batch and return it as float32 in [-1, 1] (uint8 is mapped by u / 127.5 - 1)."""
    if not isinstance(images, jax.Array):
        try:
            images = np.asarray(images)
        except (TypeError, ValueError) as err:
            raise InputError(f"images are not an array: {err}") from None
    if images.ndim != 4 or images.shape[-1] != 3:
        raise InputError(f"images must be RGB NHWC with shape (N, H, W, 3), got {tuple(images.shape)}")
    if images.shape[1] < 1 or images.shape[2] < 1:
        raise InputError(f"images have an empty spatial size {tuple(images.shape[1:3])}")
    dtype = np.dtype(images.dtype)
    if dtype == np.uint8:
        return to_float_on_device(images)
    if not np.issubdtype(dtype, np.floating):
        raise InputError(f"images must be float in [-1, 1] or uint8, got dtype {dtype}")
    return jnp.asarray(images, jnp.float32)



def predictor_from_function(
    fn: Callable[[jax.Array], Any], labels: str | Sequence[str], *, name: str = "custom", jit: bool = True
) -> Predictor:
    """Wrap any `fn(images) -> (N, K) or (N,)` scores as a Predictor; jit=False if fn is not traceable."""
    labels = (labels,) if isinstance(labels, str) else tuple(str(label) for label in labels)
    return Predictor(name, labels, None, functools.partial(_ignore_params, fn), jit=jit)


def _ignore_params(fn: Callable[[jax.Array], Any], params: Any, images: jax.Array) -> Any:
    del params  # plug-ins carry their own state
    return fn(images)


def scores_from_npy(path: str | os.PathLike, n_expected: int) -> np.ndarray:
    """Load precomputed scores from a .npy file as float32 (N, K); an (N,) file gives (N, 1).

    NaN is kept (boundary training drops those samples); +-inf, a wrong N or a non-numeric array raise.
    """
    try:
        scores = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise InputError(f"cannot read scores from {path}: {' '.join(str(err).split())}") from None
    if not isinstance(scores, np.ndarray) or not (
        np.issubdtype(scores.dtype, np.floating)
        or np.issubdtype(scores.dtype, np.integer)
        or scores.dtype == np.bool_
    ):
        dtype = getattr(scores, "dtype", type(scores).__name__)
        raise InputError(f"{path}: scores must be a numeric array, got dtype {dtype}")
    if scores.ndim == 1:
        scores = scores[:, None]
    if scores.ndim != 2 or scores.shape[1] == 0:
        raise InputError(f"{path}: scores must have shape (N,) or (N, K), got {scores.shape}")
    if scores.shape[0] != n_expected:
        raise InputError(f"{path}: has scores for {scores.shape[0]} samples, expected {n_expected}")
    scores = scores.astype(np.float32)
    if np.isinf(scores).any():
        raise InputError(f"{path}: scores contain infinite values")
    return scores


def combine_predictors(predictors: Sequence[Predictor]) -> Predictor:
    """One fused Predictor: each predictor's columns concatenated in order, in one jitted pass."""
    predictors = tuple(predictors)
    labels = tuple(label for p in predictors for label in p.labels)
    if len(set(labels)) != len(labels):
        raise InputError(f"predictors {[p.name for p in predictors]} have duplicate score columns {labels}")
    return Predictor(",".join(p.name for p in predictors), labels, tuple(p.params for p in predictors),
                     functools.partial(_combined, tuple(p.apply for p in predictors)),
                     jit=all(p.jit for p in predictors))


def _combined(applies: tuple[Callable, ...], params: tuple, images: jax.Array) -> jax.Array:
    outs = [jnp.asarray(apply(p, images), jnp.float32) for apply, p in zip(applies, params, strict=True)]
    return jnp.concatenate([o[:, None] if o.ndim == 1 else o for o in outs], axis=1)

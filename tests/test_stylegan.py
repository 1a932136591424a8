"""StyleGAN: parity with InterFaceGAN's PyTorch model (mapping, truncation, synthesis, fused up-sampling),
noise modes, and the converter's key/shape checks."""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.parity import BLUR, rel_err, spec_state_dict

from converters.interfacegan import convert_state_dict, convert_stylegan, infer_kind, infer_resolution
from ifgan_jax.errors import CheckpointError
from ifgan_jax.models import stylegan

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# float32 on the CPU lands near 1e-5 relative (|out - ref| / |ref| over the whole array; measured
# 1e-6 .. 3e-6 here); the issue sets 1e-5, and above 1e-4 is a bug, not rounding.
PARITY_TOL = 1e-5


def load_case(resolution: int):
    spec = json.loads((FIXTURES / f"stylegan_{resolution}_seed7_spec.json").read_text())
    return spec_state_dict(spec), np.load(FIXTURES / f"stylegan_{resolution}_seed7_io.npz")


def nchw(x) -> np.ndarray:
    return np.asarray(x).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("resolution", [64, 128])
def test_parity(resolution):
    state, io = load_case(resolution)
    config, params, buffers = convert_stylegan(state)
    assert config == stylegan.Config(resolution=resolution)
    arch = stylegan.architecture(config)
    w = jax.jit(arch.mapping)(params, buffers, io["z"])
    assert rel_err(w, io["w"]) <= PARITY_TOL
    wp = jax.jit(arch.truncate)(params, buffers, io["w"])
    assert wp.shape == (4, config.num_layers, 512)
    assert rel_err(wp, io["wp"]) <= PARITY_TOL
    # Both W+ batches in one call: one compilation covers image(wp) and image(wp_free).
    codes = np.concatenate([io["wp"], io["wp_free"]])
    images = jax.jit(lambda p, b, c: arch.synthesize(p, b, c, "wp", None))(params, buffers, codes)
    assert images.shape == (8, resolution, resolution, 3)
    errors = rel_err(nchw(images[:4]), io["image"]), rel_err(nchw(images[4:]), io["image_from_wp_free"])
    assert max(errors) <= PARITY_TOL, errors


def test_architecture_facts_and_config_roundtrip():
    config = stylegan.Config(resolution=256, noise_mode="random", truncation_psi=0.5)
    arch = stylegan.architecture(config)
    assert (arch.family, arch.resolution, arch.latent_dim, arch.spaces, arch.num_layers) == (
        "stylegan", 256, 512, ("z", "w", "wp"), 14)
    assert arch.normalize_z and arch.code_shape("wp") == (14, 512)
    assert stylegan.Config(**json.loads(json.dumps(dataclasses.asdict(config)))) == config
    for bad in ({"noise_mode": "fresh"}, {"fused_scale": "yes"}, {"resolution": 2048}):
        with pytest.raises(ValueError):
            stylegan.Config(**bad)


@pytest.mark.parametrize("with_truncation_buffer", [True, False])
def test_released_1024_keys_and_shapes(with_truncation_buffer):
    spec = json.loads((FIXTURES / "stylegan_1024_spec.json").read_text())
    state = {name: np.broadcast_to(np.float32(0), shape) for name, shape, _ in spec["keys"]}
    for name, shape, _ in spec["keys"]:
        if name.endswith("blur.kernel"):
            state[name] = np.broadcast_to(BLUR, shape)
    if not with_truncation_buffer:
        del state["truncation.truncation"]
    assert infer_kind(state) == "stylegan" and infer_resolution(state) == 1024
    family, config, params, buffers = convert_state_dict(state)
    assert family == "stylegan" and config == stylegan.Config(resolution=1024)
    synthesis = params["synthesis"]
    assert synthesis["layer0"]["const"].shape == (4, 4, 512)
    assert synthesis["layer10"]["weight"].shape == (3, 3, 256, 128)  # fused from 128 on
    assert synthesis["layer17"]["epilogue"]["style_mod"]["weight"].shape == (512, 32)
    assert buffers["synthesis"]["layer17"]["epilogue"]["apply_noise"]["noise"].shape == (1024, 1024)
    assert buffers["truncation"]["w_avg"].shape == (512,)


def test_one_error_lists_missing_unexpected_and_mismatched():
    state = dict(load_case(64)[0])
    del state["synthesis.layer3.epilogue.bias"]
    state["synthesis.layer3.epilogue.extra"] = np.zeros(3, np.float32)
    state["mapping.dense2.linear.weight"] = np.zeros((512, 256), np.float32)
    with pytest.raises(CheckpointError) as info:
        convert_stylegan(state)
    message = str(info.value)
    for key in ("synthesis.layer3.epilogue.bias", "synthesis.layer3.epilogue.extra", "mapping.dense2.linear.weight"):
        assert key in message
    assert "missing" in message and "unexpected" in message and "(512, 256)" in message


def test_bad_blur_kernel_and_lod_are_refused():
    state = dict(load_case(64)[0])
    with pytest.raises(CheckpointError, match="blur"):
        convert_stylegan({**state, "synthesis.layer2.blur.kernel": np.ones((512, 1, 3, 3), np.float32)})
    with pytest.raises(CheckpointError, match="lod"):
        convert_stylegan({**state, "synthesis.lod": np.float32(2.0)})


# -- noise modes on a small random 8x8 model ----------------------------------------------------------


@pytest.fixture(scope="module")
def small():
    config = stylegan.Config(resolution=8)
    shapes = stylegan.param_shapes(config)
    rng = np.random.default_rng(0)

    def fill(tree):
        return jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32), tree)

    params, buffers = fill(shapes[0]), fill(shapes[1])
    wp = rng.standard_normal((2, config.num_layers, 512)).astype(np.float32)
    return config, params, buffers, wp


@functools.cache
def _renderer(config: stylegan.Config):
    arch = stylegan.architecture(config)
    return jax.jit(lambda p, b, c, k: arch.synthesize(p, b, c, "wp", k))


def render(config, params, buffers, wp, key=None) -> np.ndarray:
    return np.asarray(_renderer(config)(params, buffers, wp, key))


def test_random_noise_is_per_layer_per_image_and_keyed():
    config = stylegan.Config(resolution=8, noise_mode="random")
    key = jax.random.key(3)
    draw_all = jax.jit(lambda k: [stylegan.layer_noise(k, i, 2, config.layer_resolution(i)) for i in range(4)])
    draws = [np.asarray(d) for d in draw_all(key)]
    assert draws[0].shape == (2, 4, 4) and draws[2].shape == (2, 8, 8)
    assert not np.allclose(draws[0], draws[1]) and not np.allclose(draws[2], draws[3])  # same size, other layer
    assert not np.allclose(draws[0][0], draws[0][1])  # each image its own noise
    np.testing.assert_array_equal(draws[1], np.asarray(draw_all(key)[1]))


def test_noise_modes(small):
    config, params, buffers, wp = small
    const = render(config, params, buffers, wp)
    zero_noise = jax.tree.map(np.zeros_like, buffers)
    zero_noise["truncation"] = buffers["truncation"]
    assert not np.allclose(const, render(config, params, zero_noise, wp))  # the stored noise is used
    none = render(dataclasses.replace(config, noise_mode="none"), params, buffers, wp)
    assert rel_err(none, render(config, params, zero_noise, wp)) <= 1e-5
    random_cfg = dataclasses.replace(config, noise_mode="random")
    a = render(random_cfg, params, buffers, wp, jax.random.key(0))
    b = render(random_cfg, params, buffers, wp, jax.random.key(1))
    np.testing.assert_array_equal(a, render(random_cfg, params, buffers, wp, jax.random.key(0)))
    assert not np.allclose(a, b) and not np.allclose(a, const)
    with pytest.raises(ValueError, match="key"):
        render(random_cfg, params, buffers, wp, None)


def test_z_and_w_spaces_compose_mapping_and_truncation(small):
    config, params, buffers, _ = small
    arch = stylegan.architecture(config)
    z = np.random.default_rng(1).standard_normal((2, 512)).astype(np.float32)

    @jax.jit
    def both(p, b, z):
        w = arch.mapping(p, b, z)
        return arch.synthesize(p, b, z, "z", None), arch.synthesize(p, b, w, "w", None), arch.truncate(p, b, w)

    from_z, from_w, wp = both(params, buffers, z)
    from_wp = render(config, params, buffers, np.asarray(wp))
    assert rel_err(from_z, from_wp) <= 1e-5 and rel_err(from_w, from_wp) <= 1e-5


def test_per_image_noise_buffers(small):
    config, params, buffers, wp = small
    # A leading batch axis on the stored noise (as inversion may optimize per image) broadcasts per image.
    batched = jax.tree.map(lambda x: x, buffers)
    for layer in range(config.num_layers):
        node = batched["synthesis"][f"layer{layer}"]["epilogue"]["apply_noise"]
        node["noise"] = jnp.stack([node["noise"], node["noise"]])
    assert rel_err(render(config, params, batched, wp), render(config, params, buffers, wp)) <= 1e-6


@pytest.mark.slow
def test_forward_1024_released_layout():
    spec = json.loads((FIXTURES / "stylegan_1024_spec.json").read_text())
    config, params, buffers = convert_stylegan(spec_state_dict({**spec, "seed": 0}))
    arch = stylegan.architecture(config)
    z = np.random.default_rng(1).standard_normal((1, 512)).astype(np.float32)
    out = np.asarray(jax.jit(lambda p, b, z: arch.synthesize(p, b, z, "z", None))(params, buffers, z))
    assert out.shape == (1, 1024, 1024, 3) and np.isfinite(out).all()

"""PGGAN: parity with InterFaceGAN's PyTorch model, and the converter's key/shape checks."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest
from helpers.parity import FIXTURES, PARITY_TOL, rel_err, spec_state_dict

from converters.interfacegan import convert_pggan, convert_state_dict, infer_kind, infer_resolution
from ifgan_jax.errors import CheckpointError
from ifgan_jax.models import pggan


@pytest.fixture(scope="module")
def pggan32():
    spec = json.loads((FIXTURES / "pggan_32_seed7_spec.json").read_text())
    return spec_state_dict(spec), np.load(FIXTURES / "pggan_32_seed7_io.npz")


def test_parity_pggan_32(pggan32):
    state, io = pggan32
    config, params, buffers = convert_pggan(state)
    assert config == pggan.Config(resolution=32)
    arch = pggan.architecture(config)
    out = jax.jit(lambda p, b, z: arch.synthesize(p, b, z, "z", None))(params, buffers, io["z"])
    assert out.shape == (4, 32, 32, 3) and out.dtype == np.float32
    err = rel_err(np.asarray(out).transpose(0, 3, 1, 2), io["image"])
    assert err <= PARITY_TOL, err


def test_architecture_facts():
    arch = pggan.architecture(pggan.Config(resolution=64))
    assert (arch.family, arch.resolution, arch.latent_dim, arch.spaces, arch.num_layers) == (
        "pggan", 64, 512, ("z",), 0)
    assert arch.normalize_z and arch.mapping is None and arch.truncate is None


def test_config_json_roundtrip():
    config = pggan.Config(resolution=256, fused_scale=True)
    assert pggan.Config(**json.loads(json.dumps(dataclasses.asdict(config)))) == config
    with pytest.raises(ValueError, match="resolution"):
        pggan.Config(resolution=48)


def test_released_1024_keys_and_shapes():
    spec = json.loads((FIXTURES / "pggan_1024_spec.json").read_text())
    # Zero-stride views: the key/shape mapping runs without allocating the 1024 model twice.
    state = {name: np.broadcast_to(np.float32(0), shape) for name, shape, _ in spec["keys"]}
    assert infer_kind(state) == "pggan" and infer_resolution(state) == 1024
    family, config, params, buffers = convert_state_dict(state)
    assert family == "pggan" and config == pggan.Config(resolution=1024)
    assert params["layer0"]["weight"].shape == (4, 4, 512, 512)
    assert params["layer17"]["weight"].shape == (3, 3, 16, 16)
    assert params["output8"]["weight"].shape == (1, 1, 16, 3)
    assert buffers["lod"].shape == ()


def test_one_error_lists_missing_unexpected_and_mismatched(pggan32):
    state = dict(pggan32[0])
    del state["layer3.conv.weight"]
    state["layer9.extra"] = np.zeros(3, np.float32)
    state["output1.wscale.bias"] = np.zeros(4, np.float32)
    with pytest.raises(CheckpointError) as info:
        convert_pggan(state)
    message = str(info.value)
    assert "layer3.conv.weight" in message and "layer9.extra" in message and "output1.wscale.bias" in message
    assert "missing" in message and "unexpected" in message and "(4,)" in message


def test_nonzero_lod_is_refused(pggan32):
    state = {**pggan32[0], "lod": np.float32(1.0)}
    with pytest.raises(CheckpointError, match="lod"):
        convert_pggan(state)


def test_not_a_generator():
    with pytest.raises(CheckpointError, match="not an InterFaceGAN"):
        infer_kind({"main.0.weight": np.zeros((100, 512, 4, 4), np.float32)})


@pytest.mark.slow
def test_forward_1024_released_layout():
    spec = json.loads((FIXTURES / "pggan_1024_spec.json").read_text())
    config, params, buffers = convert_pggan(spec_state_dict({**spec, "seed": 0}))
    arch = pggan.architecture(config)
    z = np.random.default_rng(1).standard_normal((1, 512)).astype(np.float32)
    out = np.asarray(jax.jit(lambda p, b, z: arch.synthesize(p, b, z, "z", None))(params, buffers, z))
    assert out.shape == (1, 1024, 1024, 3) and np.isfinite(out).all()

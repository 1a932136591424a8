"""Progress of long jobs: elapsed, rate and ETA; a line per 10% off a terminal, a live bar on one; --quiet."""

from __future__ import annotations

import io
import re
import sys

import numpy as np
import pytest
from conftest import needs_dcgan

from ifgan_jax import progress as progress_module
from ifgan_jax.cli import main
from ifgan_jax.predictors import load_predictor
from ifgan_jax.progress import Progress
from ifgan_jax.scoring import score_codes

LINE = re.compile(r"^(?P<desc>.+) (?P<done>\d+)/(?P<total>\d+) \(\s*[\d.]+%\) elapsed \d+:\d\d:\d\d, "
                  r"(?P<rate>[\d.]+) (?P<unit>\w+)/s, ETA (?P<eta>\d+:\d\d:\d\d|\?)(, (?P<info>.+))?$")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_every_10_percent_with_elapsed_rate_and_eta(capsys, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(progress_module.time, "perf_counter", clock)
    p = Progress(200, desc="job", unit="img")
    for _ in range(200):
        clock.now += 0.5  # 2 items per second
        p.update(1)
    p.close()
    lines = capsys.readouterr().err.splitlines()
    assert 10 <= len(lines) <= 11, lines
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    assert [int(m["done"]) for m in parsed][-10:] == list(range(20, 201, 20))
    assert all(m["desc"] == "job" and m["unit"] == "img" and float(m["rate"]) == 2.0 for m in parsed)
    half = next(m for m in parsed if m["done"] == "100")
    assert half["eta"] == "0:00:50" and "elapsed 0:00:50" in half.string  # 100 left at 2/s
    assert parsed[-1]["eta"] == "0:00:00"


def test_resumed_progress_rates_this_session_only(capsys, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(progress_module.time, "perf_counter", clock)
    p = Progress(100, initial=60, desc="resume")
    clock.now += 10.0
    p.update(20, info="loss 0.5")
    m = LINE.match(capsys.readouterr().err.strip())
    assert m and m["done"] == "80" and float(m["rate"]) == 2.0 and m["eta"] == "0:00:10" and m["info"] == "loss 0.5"


def test_disabled_progress_prints_nothing(capsys):
    p = Progress(10, desc="quiet", enabled=False)
    p.update(10)
    p.close()
    assert capsys.readouterr().err == ""


def test_terminal_gets_a_live_bar(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    err = Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    p = Progress(50, desc="live", unit="step")
    assert p._bar is not None and p._bar.running
    for _ in range(50):
        p.update(1, info="loss 0.1")
    p.close()
    out = err.getvalue()
    assert not p._bar.running
    assert "\x1b[" in out and "live" in out and "50/50" in out and "step/s" in out and "ETA" in out, out
    assert not any(LINE.match(line) for line in out.splitlines())  # not the plain lines
    second = Progress(3, desc="next")  # the finished bar freed the terminal for the next one
    assert second._bar.running
    second.update(3)
    assert not second._bar.running


def _progress_lines(err: str, desc: str) -> list[re.Match]:
    return [m for m in map(LINE.match, err.splitlines()) if m and m["desc"].startswith(desc)]


def test_train_boundary_cli_reports_progress(tmp_path, capsys):
    rng = np.random.default_rng(0)
    codes = rng.standard_normal((400, 8)).astype(np.float32)
    np.save(tmp_path / "z.npy", codes)
    np.save(tmp_path / "s.npy", codes[:, :3] + 0.1 * rng.standard_normal((400, 3)).astype(np.float32))
    base = ["train-boundary", "-c", str(tmp_path / "z.npy"), "-s", str(tmp_path / "s.npy")]

    assert main([*base, "-o", str(tmp_path / "jax")]) == 0
    lines = _progress_lines(capsys.readouterr().err, "train-boundary jax")
    assert [m["done"] for m in lines] == ["3"] and lines[-1]["unit"] == "attr"

    assert main([*base, "-o", str(tmp_path / "svc"), "--solver", "svc"]) == 0
    lines = _progress_lines(capsys.readouterr().err, "train-boundary svc")
    assert [m["done"] for m in lines] == ["1", "2", "3"] and [m["info"] for m in lines] == ["attr0", "attr1", "attr2"]

    assert main([*base, "-o", str(tmp_path / "quiet"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    for solver in ("jax", "svc"):
        assert (tmp_path / solver / "attr2_boundary.npy").is_file()


@needs_dcgan
def test_score_codes_cli_reports_progress(tmp_path, capsys):
    codes = np.random.default_rng(1).standard_normal((40, 100)).astype(np.float32)
    np.save(tmp_path / "codes.npy", codes)
    argv = ["score", "-i", str(tmp_path / "codes.npy"), "--predictor", "brightness", "--batch-size", "8"]

    assert main([*argv, "-o", str(tmp_path / "s")]) == 0
    lines = _progress_lines(capsys.readouterr().err, "score brightness")
    assert [int(m["done"]) for m in lines] == [8, 16, 24, 32, 40]
    assert np.load(tmp_path / "s" / "scores.npy").shape == (40, 1)

    assert main([*argv, "-o", str(tmp_path / "q"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    np.testing.assert_array_equal(np.load(tmp_path / "q" / "scores.npy"), np.load(tmp_path / "s" / "scores.npy"))


@needs_dcgan
def test_score_codes_in_batches_equals_the_library(tmp_path, dcgan):
    """The job's per-batch loop (for progress) gives exactly what score_codes gives in one call."""
    codes = np.random.default_rng(2).standard_normal((20, 100)).astype(np.float32)
    np.save(tmp_path / "codes.npy", codes)
    assert main(["score", "-i", str(tmp_path / "codes.npy"), "--predictor", "brightness", "--batch-size", "8",
                 "-o", str(tmp_path / "s"), "--quiet"]) == 0
    expected = np.asarray(score_codes(dcgan, codes, load_predictor("brightness"), batch_size=8))
    np.testing.assert_array_equal(np.load(tmp_path / "s" / "scores.npy"), expected)


@pytest.mark.parametrize("total", [1, 7])
def test_small_totals_print_every_update(capsys, total):
    p = Progress(total, desc="few")
    for _ in range(total):
        p.update(1)
    assert len(capsys.readouterr().err.splitlines()) == total

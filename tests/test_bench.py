"""`run.py bench`: a tiny smoke run (fields of results.json, report.md) and bad flags exiting 2."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from conftest import ROOT, needs_dcgan, run_cli

from benchmarks.config import parse_model_spec
from benchmarks.harness import SHORT_CALL_S, flops_per_image, interleaved_times


@needs_dcgan
def test_bench_smoke(tmp_path):
    out = tmp_path / "bench"
    res = run_cli("bench", "--tasks", "sample", "--batch-sizes", "2", "--repeats", "1", "--devices", "1", "2",
                  "--matmul-precision", "bfloat16", "--no-reference", "--quiet", "-o", str(out))
    assert res.returncode == 0, res.stderr
    payload = json.loads((out / "results.json").read_text())
    machine = payload["machine"]
    assert len(machine["loadavg_start"]) == 3 and len(machine["loadavg_end"]) == 3
    assert machine["versions"]["jax"] and machine["jax_backend"] == "cpu"
    assert payload["matmul_peak_flops"]["jax"] > 0
    row, bf16 = payload["rows"]
    assert bf16["impl"] == "jax@bfloat16" and bf16["rate"] > 0
    assert any("matmul precision bfloat16 vs float32: max |diff|" in note for note in payload["notes"])
    assert row["model"] == "dcgan_digiface" and row["task"] == "sample" and row["impl"] == "jax"
    assert row["batch"] == 2 and row["unit"] == "images/s" and row["rate"] > 0 and row["ms_per_batch"] > 0
    assert row["compile_s"] >= 0 and row["flops_per_item"] > 1e8  # the DCGAN is ~0.2 GFLOP per image
    assert 0 < row["pct_of_matmul_peak"] and "peak_device_bytes" in row  # None on CPU
    scaling = {r["devices"]: r for r in payload["scaling"]}
    assert set(scaling) == {1, 2}, payload["scaling"]
    assert scaling[1]["efficiency_per_device"] == pytest.approx(1.0)
    assert scaling[2]["batch"] == 2 * scaling[1]["batch"] and scaling[2]["rate"] > 0
    report = (out / "report.md").read_text()
    assert "| dcgan_digiface | sample | jax | 2 |" in report and "Scaling over devices" in report


@pytest.mark.parametrize("flags", [["--batch-sizes", "0,4"], ["--tasks", "sample,nonsense"], ["--repeats", "0"],
                                   ["-m", "pggan@7"], ["--boundary-size", "8,100"],
                                   ["--matmul-precision", "fp8"]])
def test_bad_flags_exit_2(tmp_path, flags):
    res = run_cli("bench", "-o", str(tmp_path / "x"), *flags)
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1 and "error" in res.stderr


HAS_TORCH = importlib.util.find_spec("torch") is not None
LOAD_REFERENCE = (
    "from benchmarks.references import load_torch_reference as f; m, why = f(); print(m and m.__name__, why)"
)


@pytest.mark.skipif(HAS_TORCH, reason="needs an interpreter without torch")
def test_required_reference_without_torch_exits_2(tmp_path):
    res = run_cli("bench", "--reference-torch", "-o", str(tmp_path / "x"))
    assert res.returncode == 2 and "No module named 'torch'" in res.stderr, res.stderr


def test_bench_needs_the_repository_checkout(tmp_path):
    # The installed `ifgan` console script runs outside the repository, where benchmarks/ is not importable:
    # bench says in one line that it runs from a checkout, and exits 2.
    main = "import sys; from ifgan_jax.cli import main; sys.exit(main(sys.argv[1:]))"
    res = subprocess.run([sys.executable, "-c", main, "bench", "-o", str(tmp_path / "x")], capture_output=True,
                         text=True, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1 and "repository checkout" in res.stderr and "python run.py bench" in res.stderr


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch")
def test_torch_reference_imports_from_the_repository_root():
    res = subprocess.run([sys.executable, "-c", LOAD_REFERENCE], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0 and res.stdout.strip() == "benchmarks.torch_reference None", res.stderr


def test_parse_model_spec():
    assert parse_model_spec("dcgan_digiface") is None
    assert parse_model_spec("stylegan@64") == ("stylegan", 64)


def test_interleaved_times_counts_runs():
    calls = []
    t = interleaved_times({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3,
                          min_seconds=0.0, block_seconds=0.0, settle_seconds=0.0)
    assert t["a"]["runs"] == t["b"]["runs"] == 3 and calls.count("a") == 4  # + one warm-up call each
    assert calls[2:6] == ["a", "b", "b", "a"]


def test_interleaved_times_settles_short_calls():
    # Short calls repeat for the block; those started in its first settle_seconds are not timed.
    calls = []

    def fn(name: str, seconds: float) -> Callable[[], None]:
        return lambda: (calls.append(name), time.sleep(seconds))

    t = interleaved_times({"a": fn("a", 0.004), "b": fn("b", 0.001)}, repeats=1, min_seconds=0.0,
                          block_seconds=0.03, settle_seconds=0.01)
    runs_a = calls.count("a") - 1  # minus the warm-up call
    assert 2 <= t["a"]["runs"] < runs_a and t["b"]["runs"] < calls.count("b") - 1
    assert calls[2 : 2 + runs_a] == ["a"] * runs_a and set(calls[2 + runs_a :]) == {"b"}
    assert t["a"]["median_s"] >= 0.004


def test_interleaved_times_long_calls_are_not_blocked():
    calls = []

    def slow() -> None:
        calls.append("s")
        time.sleep(SHORT_CALL_S)

    t = interleaved_times({"s": slow, "f": lambda: calls.append("f")}, repeats=2, min_seconds=0.0)
    assert t["s"]["runs"] == t["f"]["runs"] == 2 and calls == ["s", "f", "s", "f", "f", "s"]



def test_interleaved_times_first_s_replaces_the_warm_up():
    # A caller that already called a fn once (e.g. to compare outputs) passes its time: no second warm-up call.
    calls = []
    t = interleaved_times({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=2,
                          min_seconds=0.0, block_seconds=0.0, settle_seconds=0.0, first_s={"a": 7.0})
    assert calls.count("a") == 2 and calls.count("b") == 3 and calls[0] == "b"
    assert t["a"]["first_s"] == 7.0 and t["a"]["runs"] == t["b"]["runs"] == 2 and t["b"]["first_s"] < 7.0

@needs_dcgan
def test_flops_per_image_do_not_depend_on_the_loops(dcgan):
    # Cost analysis counts a loop body once; the count must come from a loop-free batch at every batch size.
    from ifgan_jax.generator import _uint8_head

    small = flops_per_image(dcgan, _uint8_head, None, 4)["flops_per_item"]
    large = flops_per_image(dcgan, _uint8_head, None, 256)["flops_per_item"]
    assert 1.5e8 < large < 2.5e8
    assert abs(large / small - 1) < 0.1

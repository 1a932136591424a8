"""Sampling over 1, 2, 4 ... devices at a fixed batch per device (weak scaling).

On CPU the devices are forced host devices, and jax reads XLA_FLAGS once at import, so each device count runs
in a fresh interpreter: `python -m benchmarks.scaling worker JSON` (internal) prints one result line.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np

from benchmarks.config import BenchConfig, log
from benchmarks.harness import interleaved_times, platform_name
from benchmarks.models import BenchModel, load_bench_model
from benchmarks.report import Results

ROOT = Path(__file__).resolve().parents[1]  # the repository root: `benchmarks` imports from there
RESULT_TAG = "IFGAN_BENCH_RESULT "  # prefix of the JSON line a scaling worker prints
WORKER_TIMEOUT_S = 600


def _scaling_devices(config: BenchConfig) -> list[int]:
    if config.devices:
        return sorted(set(config.devices))
    if platform_name() == "cpu":
        return [1, 2]
    count = len(jax.local_devices())
    return [2**i for i in range(int(math.log2(count)) + 1)]


def scaling_measure(spec: str, devices: int, batch_per_device: int, repeats: int) -> dict[str, Any]:
    """Sampling images/s on `devices` local devices at a fixed per-device batch (weak scaling)."""
    bm = load_bench_model(spec, reference=None, interfacegan_repo=None, devices=devices)
    G = bm.G
    bs = batch_per_device * devices
    z = G.sample_latents(seed=0, start=0, count=bs)
    t = interleaved_times({"jax": lambda: np.asarray(G.synthesize_uint8(z))}, repeats=repeats)["jax"]
    return {"devices": devices, "batch": bs, "rate": bs / t["median_s"], "ms_per_batch": 1e3 * t["median_s"],
            "compile_s": max(0.0, t["first_s"] - t["median_s"]), "device_kind": str(jax.local_devices()[0].device_kind),
            "available_devices": len(jax.local_devices())}


def bench_scaling(bm: BenchModel, config: BenchConfig, results: Results) -> None:
    """The sampling task on 1, 2, 4 ... devices; CPU devices are forced host devices in subprocesses."""
    counts = _scaling_devices(config)
    cpu = platform_name() == "cpu"
    per_device = config.scaling_batch or (64 if cpu else 256)
    rows = []
    for n in counts:
        if cpu:
            row = _scaling_subprocess(bm.spec, n, per_device, config.scaling_repeats)
        elif n <= len(jax.local_devices()):
            row = scaling_measure(bm.spec, n, per_device, config.scaling_repeats)
        else:
            row = {"devices": n, "error": f"only {len(jax.local_devices())} devices"}
        row["model"] = bm.spec
        rows.append(row)
        if "rate" in row:
            log(config, f"scaling {bm.spec}: {n} device(s), batch {row['batch']}: {row['rate']:.1f} img/s")
        else:
            log(config, f"scaling {bm.spec}: {n} device(s) failed: {row.get('error')}")
    base = next((r for r in rows if r.get("devices") == 1 and "rate" in r), None)
    for row in rows:
        if base and "rate" in row:
            row["speedup"] = row["rate"] / base["rate"]
            row["efficiency_per_device"] = row["speedup"] / row["devices"]
    if cpu:
        results.notes.append(f"scaling on CPU uses forced host devices (XLA_FLAGS=--xla_force_host_platform_device_"
                             f"count=N) sharing {os.cpu_count()} cores: it measures sharding overhead, not more "
                             f"hardware; efficiency near 1/N is expected")
    results.scaling.extend(rows)


def _scaling_subprocess(spec: str, devices: int, per_device: int, repeats: int) -> dict[str, Any]:
    # jax reads XLA_FLAGS once at import, so each device count needs a fresh interpreter. The repository root
    # goes first on its PYTHONPATH: the parent may run from another directory (model dirs stay relative to it).
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    python_path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "XLA_FLAGS": " ".join([*flags, f"--xla_force_host_platform_device_count={devices}"]),
           "JAX_PLATFORMS": "cpu", "PYTHONPATH": python_path}
    job = json.dumps({"spec": spec, "devices": devices, "batch_per_device": per_device, "repeats": repeats})
    try:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.scaling", "worker", job], capture_output=True,
                              text=True, env=env, timeout=WORKER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"devices": devices, "error": f"timed out after {WORKER_TIMEOUT_S} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG) :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"devices": devices, "error": f"worker exit {proc.returncode}: {tail[0][:300]}"}


def _worker_main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "worker":
        print("usage: python -m benchmarks.scaling worker JSON (internal; use `run.py bench`)", file=sys.stderr)
        return 2
    job = json.loads(argv[1])
    row = scaling_measure(job["spec"], job["devices"], job["batch_per_device"], job["repeats"])
    print(RESULT_TAG + json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))

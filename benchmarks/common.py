"""Timing helpers and the machine description written into every results file."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """The library's machine description (CPU, cores, load, devices, versions, torch's threads if importable)."""
    from ifgan_jax.bench import machine_info

    info = machine_info()
    info["torch"] = info["versions"]["torch"]  # the top-level key the results files have always had
    return info


def median_time(fn: Callable[[], Any], *, repeats: int = 5, min_time: float = 0.0) -> float:
    """Median seconds per call of `fn` (which must block until its result is ready)."""
    times = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def matmul_peak_flops(n: int = 2048, repeats: int = 5) -> float:
    """float32 FLOP/s of an n^3 matmul in JAX on the default device: the ceiling used for % of peak."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    return 2 * n**3 / median_time(lambda: f(a).block_until_ready(), repeats=repeats)


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """Write `benchmarks/results/<name>.json` with the machine description added."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), **payload}
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path

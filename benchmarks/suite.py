"""`run.py bench`: throughput of every pipeline task, JAX beside the torch reference, with scaling over devices.

`run_bench(BenchConfig(...))` measures, per model, task and batch size: items/s, ms per batch (median of
interleaved repeats after a warm-up call, synchronised by the host transfer), compile time, peak device
memory (where the backend reports it), FLOPs per item from XLA's cost analysis and the achieved share of a
matmul peak measured in the same run. It writes `results.json`, `report.md` and, with matplotlib, PNG plots.

torch is never required: the reference runners live in `benchmarks/torch_reference.py` (`load_torch_reference`)
and are skipped with a note when that module cannot be imported. This package sits in the repository, not in
the installed wheel, so the suite runs from a checkout: `python run.py bench ...`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks.config import BenchConfig, check_config, log
from benchmarks.harness import json_default, load_average, machine_info, matmul_peak
from benchmarks.invert_encoder import bench_invert_encoder
from benchmarks.models import load_bench_model
from benchmarks.references import load_torch_reference
from benchmarks.report import Results, headline, render_report, write_plots
from benchmarks.scaling import bench_scaling
from benchmarks.tasks import bench_boundary, bench_edit, bench_invert, bench_sample, bench_score, score_predictor
from ifgan_jax.errors import InputError


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
    check_config(config)
    out = Path(config.out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create {out}: {err.strerror or err}") from None
    started = time.time()
    load_start = load_average()
    reference, why_not = _requested_reference(config)
    results = Results(matmul_peak(), reference.matmul_peak() if reference else None)
    if why_not:
        results.notes.append(f"every torch reference is skipped: {why_not}")
    log(config, f"matmul peak: jax {results.peak_flops / 1e9:.0f} GFLOP/s"
                + (f", torch {results.torch_peak_flops / 1e9:.0f} GFLOP/s" if results.torch_peak_flops else ""))
    predictor = None
    for spec in config.models:
        bm = load_bench_model(spec, reference=reference, interfacegan_repo=config.interfacegan_repo)
        results.notes.extend(bm.notes)
        for task in config.tasks:
            if task != "boundary":
                log(config, f"{task} on {spec}")
            if task == "sample":
                bench_sample(bm, config, results)
                bench_scaling(bm, config, results)
            elif task == "score":
                predictor = predictor or score_predictor(config, results)
                bench_score(bm, config, results, predictor)
            elif task == "edit":
                bench_edit(bm, config, results)
            elif task == "invert":
                bench_invert(bm, config, results)
            elif task == "invert-encoder":
                bench_invert_encoder(bm, config, results)
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
    (out / "results.json").write_text(json.dumps(payload, indent=2, default=json_default) + "\n")
    (out / "report.md").write_text(render_report(payload))
    return payload

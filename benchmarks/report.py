"""The results of a `run.py bench` run: rows, ratios and notes as they accumulate, report.md and the plots."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


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


def headline(results: Results) -> list[dict[str, Any]]:
    """Per model, task and ratio name: the value at the largest batch measured (the throughput regime)."""
    best: dict[tuple, dict] = {}
    for r in results.ratios:
        key = (r["model"], r["task"], r["name"])
        if key not in best or (r["batch"] or 0) >= (best[key]["batch"] or 0):
            best[key] = r
    return list(best.values())


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
        import matplotlib  # optional (the `plots` extra): without it the run writes no PNGs

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    written = []
    models = sorted({r["model"] for r in payload["rows"] if r["unit"] == "images/s" and r["task"] != "invert"})
    for model in models:
        series: dict[str, list[tuple[int, float]]] = {}
        for r in payload["rows"]:
            if r["model"] == model and r["task"] in ("sample", "score", "edit") and r["impl"] != "predictor_only":
                label = r["impl"] if r["task"] == "sample" else f"{r['task']}:{r['impl']}"
                series.setdefault(label, []).append((r["batch"], r["rate"]))
        if not series:
            continue  # e.g. only invert-encoder ran: no throughput-vs-batch curve to draw
        fig, ax = plt.subplots(figsize=(6, 4))
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

"""What the `analyze` job writes from its analysis.json: heatmap PNGs (matplotlib) and report.md."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure  # the Agg canvas through Figure.savefig: no pyplot, no global backend

from ifgan_jax import files

HEATMAPS = ("correlation.png", "boundary_cosine.png", "rescoring.png")
FACE_CROP_NOTE = (
    "The age and gender networks were trained on face chips aligned by 5 landmarks with 0.2 padding; "
    "generated faces are scored whole, so their numbers are attribute scores for boundaries, not calibrated "
    "ages or genders."
)


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Two (rows, cols, H, W, 3) uint8 grids as one, a blank column between (for `files.save_grid`)."""
    blank = np.full_like(left[:, :1], 255)
    return np.concatenate([left, blank, right], axis=1)


def write_heatmap(path: Path, matrix: np.ndarray, rows: list[str], cols: list[str], title: str, *,
                  limit: float | None = None, fmt: str = "{:.2f}") -> None:
    """One annotated heatmap PNG, a diverging color map centred on 0, written atomically."""
    m = np.asarray(matrix, np.float64)
    lim = limit if limit is not None else max(float(np.nanmax(np.abs(m))), 1e-12)
    fig = Figure(figsize=(2.0 + 0.62 * len(cols), 1.6 + 0.5 * len(rows)), dpi=110)
    ax = fig.subplots()
    image = ax.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, fmt.format(m[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if abs(m[i, j]) > 0.6 * lim else "black")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    files.atomic_write_bytes(path, buffer.getvalue())


def _grid(matrix: dict[str, dict[str, float]], rows: list[str], cols: list[str]) -> np.ndarray:
    return np.array([[matrix[r][c] for c in cols] for r in rows], np.float64)


def write_heatmaps(out: Path, s: dict[str, Any]) -> list[str]:
    """correlation.png, boundary_cosine.png and rescoring.png (each attribute's change in its own std)."""
    names = s["attributes"]
    write_heatmap(out / HEATMAPS[0], _grid(s["correlation"], names, names), names, names,
                  "Pearson correlation of the scores", limit=1.0)
    write_heatmap(out / HEATMAPS[1], _grid(s["boundary_cosine"], names, names), names, names,
                  "cosine between boundaries", limit=1.0)
    std = np.array([s["score_std"][a] for a in names])
    write_heatmap(out / HEATMAPS[2], _grid(s["rescoring"], names, names) / std, names, names,
                  f"re-scoring: score change (in std over samples) of each attribute (columns)\nmoving along "
                  f"each boundary (rows) from -{s['distance']:g} to +{s['distance']:g}")
    return list(HEATMAPS)


def _table(matrix: dict[str, dict[str, float]], rows: list[str], cols: list[str], fmt: str) -> list[str]:
    lines = ["| | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    lines += [f"| **{r}** | " + " | ".join(fmt.format(matrix[r][c]) for c in cols) + " |" for r in rows]
    return lines


def report(s: dict[str, Any]) -> str:
    """report.md: the setup, every matrix as a table beside its heatmap, the conditional pairs and grids."""
    names, d = s["attributes"], s["distance"]
    source = (f"{s['count']} samples (seed {s['seed']})" if s["codes"] is None
              else f"{s['count']} codes from `{s['codes']}` scored in `{s['scores']}`")
    lines = [
        f"# InterFaceGAN analyses of `{s['model']}` with `{s['predictor']}`", "",
        f"{source}; boundaries trained with InterFaceGAN's split (top/bottom 2%, 70/30 train/val) and the "
        f"batched JAX linear SVM; re-scoring on {s['rescore_samples']} fresh samples moved to -{d:g} and +{d:g} "
        "in absolute mode (signed distance to the hyperplane).", "", FACE_CROP_NOTE, "",
    ]
    if s["dropped"]:
        lines += ["Not analysed (redundant columns): " + ", ".join(f"`{k}` = {v}" for k, v in s["dropped"].items())
                  + ".", ""]
    lines += ["## Boundaries", "", "| attribute | mean score | std | train acc | val acc | remaining acc | "
              "per class | train/val |", "|---|---|---|---|---|---|---|---|"]
    for name in names:
        b = s["boundaries"][name]
        acc, n = b["accuracy"], b["counts"]
        cells = " | ".join("-" if acc[k] is None else f"{acc[k]:.3f}" for k in ("train", "val", "remaining"))
        lines.append(f"| {name} | {s['score_mean'][name]:.3f} | {s['score_std'][name]:.3f} | {cells} | "
                     f"{n['chosen_per_class']} | {n['train']}/{n['val']} |")
    lines += ["", "## Attribute correlation (Pearson, over the samples)", "",
              *_table(s["correlation"], names, names, "{:+.2f}"), "", "![correlation](correlation.png)", "",
              "## Cosine similarity of the boundaries", "",
              *_table(s["boundary_cosine"], names, names, "{:+.2f}"), "", "![cosine](boundary_cosine.png)", "",
              "## Re-scoring", "",
              f"Row b, column a: mean score of a at +{d:g} minus at -{d:g} along boundary b (in a's own units: "
              "probabilities, years for age). The diagonal is each boundary's own effect, the rest its side effects.",
              "", *_table(s["rescoring"], names, names, "{:+.3f}"), "",
              "![rescoring](rescoring.png) (heatmap in each attribute's standard deviation over the samples)", "",
              f"Along its own boundary, mean score at -{d:g} -> +{d:g}: " + "; ".join(
                  f"{n} {s['rescoring_means'][n][n][0]:.3f} -> {s['rescoring_means'][n][n][1]:.3f}" for n in names)
              + ".", ""]
    lines += _conditional_section(s)
    if s["grids"]:
        lines += ["## Edits along each boundary", "", "Rows: fresh samples; columns: -3 .. +3 (absolute mode).", ""]
        lines += [f"### {n}\n\n![{n}]({s['grids'][n]})\n" for n in names if n in s["grids"]]
    lines += ["## Timings", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in s.get("timings", {}).items()]
    return "\n".join(lines) + "\n"


def _conditional_section(s: dict[str, Any]) -> list[str]:
    d = s["distance"]
    lines = ["## Conditional manipulation", "",
             f"Pair b|a: edit along b, projected orthogonal to a (InterFaceGAN's conditional boundary), so that a "
             f"stays. Pairs chosen by {s['pairs_chosen_by']}. Side effect = change of a from -{d:g} to +{d:g}; "
             "target = change of b itself.", ""]
    if not s["conditional"]:
        return [*lines, "No pair was entangled enough to list.", ""]
    lines += ["| pair b\\|a | cos(b, a) | side effect on a: primal | conditioned | shrunk | target b: primal | "
              "conditioned |", "|---|---|---|---|---|---|---|"]
    for key, c in s["conditional"].items():
        shrunk = "yes" if abs(c["conditioned"]) < abs(c["primal"]) else "**no**"
        lines.append(f"| {key.replace('|', chr(92) + '|')} | {c['cosine']:+.2f} | {c['primal']:+.3f} | "
                     f"{c['conditioned']:+.3f} | {shrunk} | {c['target']['primal']:+.3f} | "
                     f"{c['target']['conditioned']:+.3f} |")
    lines.append("")
    for key in s["conditional"]:
        if key in s["grids"]:
            lines += [f"### {key}: primal (left) | conditioned (right)", "", f"![{key}]({s['grids'][key]})", ""]
    return lines

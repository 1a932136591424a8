"""The offline end-to-end demo: sample + score, train boundaries, project, edit, measure, report."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

from ifgan_jax import io
from ifgan_jax.boundary import project_boundary, train_boundaries
from ifgan_jax.edit import edit_codes
from ifgan_jax.generator import Generator
from ifgan_jax.predictors import Predictor, brightness, load_predictor
from ifgan_jax.progress import Progress
from ifgan_jax.scoring import make_score_head

DISTANCES = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)
ATTRIBUTES = ("happy", "surprise", "brightness")


def _fer_and_brightness(fer_apply, params, images):
    return jnp.concatenate([fer_apply(params, images), brightness(images).reshape(images.shape[0], 1)], axis=1)


def demo_predictor() -> Predictor:
    """FER's 7 expression probabilities plus mean brightness, scored in one pass."""
    fer = load_predictor("fer")
    return Predictor("fer+brightness", (*fer.labels, "brightness"), fer.params,
                     functools.partial(_fer_and_brightness, fer.apply))


def run_demo(G: Generator, out_dir: str | Path, *, count: int = 20000, seed: int = 0, grid_samples: int = 8,
             curve_samples: int = 256, batch_size: int = 256, show_progress: bool = True) -> dict[str, Any]:
    """Run every stage on `G` and write report.md, grids, a curve plot and demo.json into out_dir."""
    out = Path(out_dir)
    (out / "boundaries").mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    predictor = demo_predictor()
    head = make_score_head(predictor, with_images=False)
    labels = list(predictor.labels)

    t = time.perf_counter()
    codes = G.sample_latents(seed, 0, count)
    progress = Progress(count, desc="demo: sample + score", enabled=show_progress)
    parts = []
    for start in range(0, count, batch_size):
        chunk = codes[start : start + batch_size]
        parts.append(np.asarray(G.synthesize_with(chunk, head, predictor.params)["scores"]))
        progress.update(len(chunk))
    progress.close()
    scores = np.concatenate(parts)
    timings["sample_and_score_s"] = time.perf_counter() - t
    io.atomic_save_npy(out / "z.npy", codes)
    io.atomic_save_npy(out / "scores.npy", scores)
    io.atomic_write_json(out / "attributes.json", labels)

    timings["sample_and_score_images_per_s"] = count / timings["sample_and_score_s"]
    t = time.perf_counter()
    columns = [labels.index(a) for a in ATTRIBUTES]
    trained = train_boundaries(codes, scores[:, columns], solver="jax", seed=seed)
    timings["train_boundaries_s"] = time.perf_counter() - t
    boundaries = {a: np.asarray(trained.boundaries[k : k + 1]) for k, a in enumerate(ATTRIBUTES)}
    reports = {a: trained.reports[k] for k, a in enumerate(ATTRIBUTES)}
    boundaries["happy_c_surprise"] = np.asarray(project_boundary(boundaries["happy"], boundaries["surprise"]))
    for name, b in boundaries.items():
        io.atomic_save_npy(out / "boundaries" / f"{name}_boundary.npy", b.astype(np.float32))

    t = time.perf_counter()
    names = ["happy", "happy_c_surprise", "brightness"]
    stacked = jnp.asarray(np.concatenate([boundaries[n] for n in names]))
    distances = jnp.asarray(DISTANCES, jnp.float32)
    curve_codes = G.sample_latents(seed + 1, 0, curve_samples)  # fresh samples, not the training set
    edited = edit_codes(jnp.asarray(curve_codes), stacked, distances, mode="absolute")
    n_b, n_s = len(names), len(DISTANCES)
    flat = edited.reshape(-1, G.latent_dim)
    result = G.synthesize_with(flat, make_score_head(predictor, with_images=True), predictor.params)
    curve_scores = np.asarray(result["scores"]).reshape(curve_samples, n_b, n_s, len(labels))
    images = np.asarray(result["images"]).reshape(curve_samples, n_b, n_s, *result["images"].shape[1:])
    timings["edit_and_score_s"] = time.perf_counter() - t
    timings["edit_images_per_s"] = curve_samples * n_b * n_s / timings["edit_and_score_s"]
    grids = {}
    for k, name in enumerate(names):
        path = out / f"grid_{name}.png"
        io.save_grid(path, images[:grid_samples, k])
        grids[name] = path.name
    curves = {name: {label: curve_scores[:, k, :, labels.index(label)].mean(0).tolist() for label in ATTRIBUTES}
              for k, name in enumerate(names)}
    _plot_curves(out / "curve.png", curves)

    summary = {
        "model": G.name, "count": count, "seed": seed, "distances": list(DISTANCES),
        "boundaries": {a: reports[a] for a in ATTRIBUTES},
        "cosine_happy_surprise": float((boundaries["happy"] @ boundaries["surprise"].T)[0, 0]),
        "cosine_happy_conditioned_surprise": float((boundaries["happy_c_surprise"] @ boundaries["surprise"].T)[0, 0]),
        "curves": curves, "grids": grids, "timings": timings, "devices": [str(d) for d in jax.devices()],
    }
    io.atomic_write_json(out / "demo.json", summary)
    io.atomic_write_bytes(out / "report.md", _report(summary).encode())
    return summary


def _plot_curves(path: Path, curves: dict[str, dict[str, list[float]]]) -> None:
    """Mean attribute score against edit distance, drawn with Pillow (no plotting dependency)."""
    w, h, pad = 720, 420, 50
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle([pad, pad, w - pad, h - pad], outline="black")
    colors = {"happy": (220, 50, 50), "happy_c_surprise": (50, 120, 220), "brightness": (60, 160, 60)}
    n = len(DISTANCES)
    for name, per_label in curves.items():
        label = "brightness" if name == "brightness" else "happy"
        values = per_label[label]
        pts = [(pad + i * (w - 2 * pad) / (n - 1), h - pad - v * (h - 2 * pad)) for i, v in enumerate(values)]
        draw.line(pts, fill=colors[name], width=3)
        draw.text((pts[-1][0] - 150, pts[-1][1] - 16), f"{name}: {label}", fill=colors[name])
    for i, d in enumerate(DISTANCES):
        draw.text((pad + i * (w - 2 * pad) / (n - 1) - 8, h - pad + 8), f"{d:+.0f}", fill="black")
    draw.text((pad, 15), "mean score vs edit distance (y: 0 to 1)", fill="black")
    io.atomic_write_bytes(path, io.encode_png(np.asarray(img)))


def _report(s: dict[str, Any]) -> str:
    lines = [
        f"# ifgan-jax demo on `{s['model']}`", "",
        f"{s['count']} samples (seed {s['seed']}) scored by the FER expression classifier and mean brightness; "
        "linear boundaries trained with the batched JAX solver; edits in absolute mode "
        "(signed distance to the hyperplane).", "",
        "## Boundaries", "", "| attribute | train acc | val acc | remaining acc | per class (top/bottom) | train/val |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in s["boundaries"].items():
        acc, n = r["accuracy"], r["counts"]
        cells = " | ".join("-" if acc[k] is None else f"{acc[k]:.3f}" for k in ("train", "val", "remaining"))
        lines.append(f"| {name} | {cells} | {n['chosen_per_class']} | {n['train']}/{n['val']} |")
    lines += [
        "", f"Cosine(happy, surprise) = {s['cosine_happy_surprise']:.3f}; after projecting happy orthogonal to "
        f"surprise: {s['cosine_happy_conditioned_surprise']:.2e}.", "",
        "## Mean score against edit distance", "", "| boundary | score | " + " | ".join(
            f"{d:+.0f}" for d in s["distances"]) + " |", "|---|---|" + "---|" * len(s["distances"]),
    ]
    for name, per_label in s["curves"].items():
        for label, values in per_label.items():
            lines.append(f"| {name} | {label} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    lines += ["", "![curve](curve.png)", "", "## Edits (rows: samples, columns: distances -3 .. +3)", ""]
    for name, grid in s["grids"].items():
        lines += [f"### {name}", "", f"![{name}]({grid})", ""]
    lines += ["## Timings", "", "| stage | value |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in s["timings"].items()]
    return "\n".join(lines) + "\n"

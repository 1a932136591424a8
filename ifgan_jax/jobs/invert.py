"""Resumable inversion of an image set to a directory, by one process or shared by several.

Output directory: codes.npy (N, ...) in the chosen space (ready for `edit -i`), reconstructions/{i:06d}.png,
metrics.json (per image: source, mse, psnr, loss, steps, failed), failed.json (inputs skipped with reasons,
and images whose loss went non-finite), grid.png (target | reconstruction pairs of the first images),
noise.npz with --optimize-noise, and meta.json. While running, each finished batch is committed atomically
to batches/NNNNN.npz; a killed run resumes from there and ends with the same files as an uninterrupted one.

With P processes (ifgan_jax/distributed.py) process i inverts a contiguous share of whole batches into its
own resumable part directory OUT/.parts/0000i/, numbered as in a single run; the merge moves every batch
and reconstruction into OUT and finishes it exactly as a single run does. Each image's result does not
depend on its batch mates (invert.py pads every call to whole micro-batches), so the bytes are the same.
"""

from __future__ import annotations

import hashlib
import io as _io
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ifgan_jax import files
from ifgan_jax.distributed import PARTS_DIR, ProcessInfo, barrier, part_dir, share, take_merge_lock
from ifgan_jax.errors import InputError

PROGRESS_FILE = ".progress.json"
BATCH_DIR = "batches"
RECON_DIR = "reconstructions"
OUTPUT_NAMES = ("meta.json", PROGRESS_FILE, BATCH_DIR, "codes.npy", "noise.npz", RECON_DIR,
                "metrics.json", "failed.json", "grid.png")
GRID_IMAGES = 32  # the grid shows the first images only; all reconstructions are PNGs anyway
GRID_PAIRS_PER_ROW = 4
PART_KEYS = ("codes", "mse", "psnr", "loss", "steps", "failed")


def run_identity(G: Any, plan: Any, loaded: Any, *, init: str, seed: int, crop: bool, batch_size: int,
                 vgg16_path: str | None, lpips_lin_path: str | None, with_vgg: bool) -> dict[str, Any]:
    """Everything that fixes the outputs; meta.json keys, compared when a directory is resumed."""
    return {
        "model": G.name,
        "family": G.arch.family,
        "space": plan.space,
        "steps": plan.steps,
        "lr": plan.lr,
        "init": init,
        "seed": int(seed),
        "crop": bool(crop),
        "batch_size": int(batch_size),
        "loss": plan.loss,
        "perceptual_weight": plan.perceptual_weight if with_vgg else None,
        "vgg16_sha256": file_sha256(vgg16_path),
        "lpips_lin_sha256": file_sha256(lpips_lin_path),
        "optimize_noise": bool(plan.optimize_noise),
        "count": len(loaded),
        "inputs_sha256": inputs_sha256(loaded),
    }


def run_inversion(G: Any, plan: Any, loaded: Any, out: Path, identity: dict[str, Any], *, init: str, seed: int,
                  vgg: Any, overwrite: bool = False, show_progress: bool = True) -> dict[str, Any] | None:
    """Invert every image of `loaded` into `out`; None when `out` already holds this complete run."""
    if not prepare_dir(out, identity, overwrite):
        return None
    n = len(loaded)
    parts = invert_range(G, plan, loaded, out, 0, n, identity, init, seed, vgg, show_progress=show_progress)
    return finish(out, loaded, parts, identity)


def run_inversion_shared(G: Any, plan: Any, loaded: Any, out: Path, identity: dict[str, Any], info: ProcessInfo,
                         *, init: str, seed: int, vgg: Any, overwrite: bool = False,
                         show_progress: bool = True) -> dict[str, Any]:
    """This process's share of `run_inversion` in OUT/.parts/, then the merge (process 0, or the last one)."""
    n, bs = len(loaded), identity["batch_size"]
    if _merged_complete(out, identity):
        if not overwrite:
            print(f"{out}: this run is already complete", flush=True)
            return {"skipped": True}
    elif (out / "meta.json").is_file() and not overwrite:
        files.open_run_dir(out, identity, OUTPUT_NAMES, False)  # raises for a different run
    if overwrite and info.process_id == 0:
        files.remove_outputs(out, OUTPUT_NAMES)
    start, stop = share(n, info.num_processes, info.process_id, bs)
    result: dict[str, Any] = {"skipped": False, "share": [start, stop], "merged": None}
    if stop > start:
        part = part_dir(out, info.process_id)
        part_identity = {**identity, "share": [start, stop], "num_processes": info.num_processes}
        meta = files.open_run_dir(part, part_identity, OUTPUT_NAMES, overwrite)
        if not (meta and meta.get("complete")):
            if meta is None:
                files.atomic_write_json(part / "meta.json", {**part_identity, "complete": False})
            invert_range(G, plan, loaded, part, start, stop, identity, init, seed, vgg,
                         show_progress=show_progress)
            files.atomic_write_json(part / "meta.json", {**part_identity, "complete": True})
    if info.runtime:
        barrier(info, "ifgan_invert_parts_written")
        if info.process_id == 0:
            result["merged"] = merge_parts(out, plan, loaded, identity, info.num_processes)
        barrier(info, "ifgan_invert_merged")
    elif _all_parts_complete(out, n, bs, info.num_processes) and take_merge_lock(out):
        result["merged"] = merge_parts(out, plan, loaded, identity, info.num_processes)
    return result


def invert_range(G: Any, plan: Any, loaded: Any, out: Path, start: int, stop: int, identity: dict[str, Any],
                 init: str, seed: int, vgg: Any, *, show_progress: bool) -> list[dict[str, Any]]:
    """Invert images [start, stop) (start on a batch boundary) into out/batches and out/reconstructions."""
    from ifgan_jax import invert as inv
    from ifgan_jax.progress import Progress

    bs = identity["batch_size"]
    batches = list(range(start // bs, -(-stop // bs)))
    parts_dir = out / BATCH_DIR
    parts_dir.mkdir(exist_ok=True)
    (out / RECON_DIR).mkdir(exist_ok=True)
    bounds = {b: (b * bs, min((b + 1) * bs, stop)) for b in batches}
    parts = {b: read_part(batch_path(out, b), hi - lo, plan) for b, (lo, hi) in bounds.items()}
    done = sum(hi - lo for b, (lo, hi) in bounds.items() if parts[b] is not None)
    progress = Progress(stop - start, done, desc=f"invert {G.name}", enabled=show_progress)
    with files.PngWriter() as writer:
        for b, (lo, hi) in bounds.items():
            if parts[b] is not None:
                continue
            res = inv.invert(G, loaded.uint8[lo:hi], plan.space, steps=plan.steps, lr=plan.lr,
                             loss=plan.loss, init=init, seed=seed, batch_size=bs, vgg16=vgg,
                             perceptual_weight=plan.perceptual_weight, optimize_noise=plan.optimize_noise,
                             micro_batch=plan.micro_batch)
            recon = np.clip((res.reconstructions + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
            writer.submit([recon_path(out, i) for i in range(lo, hi)], recon).result()  # on disk before commit
            part = {"codes": res.codes, "mse": res.mse, "psnr": res.psnr, "loss": res.loss,
                    "steps": res.steps, "failed": res.failed}
            if res.noise is not None:
                part.update({f"noise:{k}": v for k, v in res.noise.items()})
            buf = _io.BytesIO()
            np.savez(buf, **part)
            files.atomic_write_bytes(batch_path(out, b), buf.getvalue())
            parts[b] = part
            done += hi - lo
            files.atomic_write_json(out / PROGRESS_FILE, {"done": done})
            progress.update(hi - lo)
    progress.close()
    return [parts[b] for b in batches]


def batch_path(out: Path, batch: int) -> Path:
    return out / BATCH_DIR / f"{batch:05d}.npz"


def recon_path(out: Path, index: int) -> Path:
    return out / RECON_DIR / f"{index:06d}.png"


def read_part(path: Path, count: int, plan: Any) -> dict[str, Any] | None:
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


def merge_parts(out: Path, plan: Any, loaded: Any, identity: dict[str, Any], num_processes: int) -> dict[str, Any]:
    """Move every part's batches and reconstructions into `out`, then finish it as a single run would.

    Idempotent: a merge killed half-way finds the moved files in `out` and goes on.
    """
    n, bs = len(loaded), identity["batch_size"]
    (out / BATCH_DIR).mkdir(parents=True, exist_ok=True)
    (out / RECON_DIR).mkdir(exist_ok=True)
    for i, (start, stop) in enumerate(_shares(n, bs, num_processes)):
        part = part_dir(out, i)
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
    shutil.rmtree(out / PARTS_DIR, ignore_errors=True)
    return result


def _move_if_present(source: Path, target: Path) -> None:
    if source.is_file():
        os.replace(source, target)


def _shares(n: int, bs: int, num_processes: int) -> list[tuple[int, int]]:
    return [share(n, num_processes, i, bs) for i in range(num_processes)]


def _all_parts_complete(out: Path, n: int, bs: int, num_processes: int) -> bool:
    for i, (start, stop) in enumerate(_shares(n, bs, num_processes)):
        if stop > start and not (files.read_json(part_dir(out, i) / "meta.json") or {}).get("complete"):
            return False
    return True


def _merged_complete(out: Path, identity: dict[str, Any]) -> bool:
    meta = files.read_json(out / "meta.json") or {}
    same = all(meta.get(k) == v for k, v in identity.items())
    return bool(meta.get("complete") and same and not (out / PARTS_DIR).exists())


def finish(out: Path, loaded: Any, parts: list[dict[str, Any]], identity: dict[str, Any]) -> dict[str, Any]:
    """Merge the batches into the final files, then drop the batch parts."""
    merged = {k: np.concatenate([p[k] for p in parts]) for k in PART_KEYS}
    files.atomic_save_npy(out / "codes.npy", merged["codes"].astype(np.float32))
    noise_keys = sorted(k for k in parts[0] if k.startswith("noise:"))
    if noise_keys:
        buf = _io.BytesIO()
        np.savez(buf, **{k.removeprefix("noise:"): np.concatenate([p[k] for p in parts]) for k in noise_keys})
        files.atomic_write_bytes(out / "noise.npz", buf.getvalue())
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
    files.atomic_write_json(out / "meta.json", {**identity, "complete": True, "versions": _versions()})
    shutil.rmtree(out / BATCH_DIR, ignore_errors=True)
    (out / PROGRESS_FILE).unlink(missing_ok=True)
    return {"images": images, "diverged": summary["diverged"]}


def _write_grid(out: Path, loaded: Any) -> None:
    from PIL import Image

    k = min(GRID_IMAGES, len(loaded))
    recon = np.stack([np.asarray(Image.open(recon_path(out, i)).convert("RGB")) for i in range(k)])
    pairs = np.stack([loaded.uint8[:k], recon], axis=1)  # (k, 2, H, W, 3)
    per_row = min(GRID_PAIRS_PER_ROW, k)
    rows = -(-k // per_row)
    blank = np.full((rows * per_row - k, *pairs.shape[1:]), 255, np.uint8)
    cells = np.concatenate([pairs, blank]).reshape(rows, per_row * 2, *pairs.shape[2:])
    files.save_grid(out / "grid.png", cells)


def prepare_dir(out: Path, identity: dict[str, Any], overwrite: bool) -> bool:
    """False when this exact run is already complete; raises InputError for a different run."""
    meta = files.open_run_dir(out, identity, OUTPUT_NAMES, overwrite)
    if meta is None:
        files.atomic_write_json(out / "meta.json", {**identity, "complete": False, "versions": _versions()})
        return True
    if meta.get("complete"):
        print(f"{out}: this run is already complete", flush=True)
        return False
    return True


def _num(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None  # JSON has no NaN/inf


def file_sha256(path: str | None) -> str | None:
    """sha256 of a file's bytes (None for no file)."""
    if not path:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def inputs_sha256(loaded: Any) -> str:
    """sha256 over the input names and pixels: a resumed run must see the same images."""
    h = hashlib.sha256()
    for name in loaded.names:
        h.update(name.encode() + b"\0")
    h.update(np.ascontiguousarray(loaded.uint8).tobytes())
    return h.hexdigest()


def _versions() -> dict[str, str]:
    import flax
    import jax
    import optax

    import ifgan_jax

    return {"ifgan_jax": ifgan_jax.__version__, "jax": jax.__version__, "flax": flax.__version__,
            "optax": optax.__version__, "numpy": np.__version__}

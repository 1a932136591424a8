"""`invert`: latent codes for real images (GAN inversion), resumable per batch.

Output directory: codes.npy (N, ...) in the chosen space (ready for `edit -i`), reconstructions/{i:06d}.png,
metrics.json (per image: source, mse, psnr, loss, steps, failed), failed.json (inputs skipped with reasons,
and images whose loss went non-finite), grid.png (target | reconstruction pairs of the first images),
noise.npz with --optimize-noise, and meta.json. While running, each finished batch is committed atomically
to batches/NNNNN.npz; a killed run resumes from there and ends with the same files as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import hashlib
import io as _io
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ifgan_jax.cli.common import add_model_args, load_generator_from_args

PROGRESS_FILE = ".progress.json"
BATCH_DIR = "batches"
OUTPUT_NAMES = ("meta.json", PROGRESS_FILE, BATCH_DIR, "codes.npy", "noise.npz", "reconstructions",
                "metrics.json", "failed.json", "grid.png")
GRID_IMAGES = 32  # the grid shows the first images only; all reconstructions are PNGs anyway
GRID_PAIRS_PER_ROW = 4
PART_KEYS = ("codes", "mse", "psnr", "loss", "steps", "failed")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("invert", help="find latent codes that reproduce given images (GAN inversion)")
    add_model_args(p)
    p.add_argument("-i", "--images", required=True,
                   help="a folder of images, one image file, or a uint8 .npy of shape (N, H, W, 3)")
    p.add_argument("-o", "--out", required=True, help="output directory")
    p.add_argument("--space", default="z", choices=("z", "w", "wp"), help="latent space of the codes")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per image (default 1000)")
    p.add_argument("--lr", type=float, default=None, help="peak Adam learning rate (default 0.1)")
    p.add_argument("--batch-size", type=int, default=16, help="images optimized together (and per commit)")
    p.add_argument("--init", default=None,
                   help="mean | random | best-of-K (default: best-of-256 for z, mean for w/wp)")
    p.add_argument("--vgg16", help="torchvision VGG16 weights (.pth): adds an LPIPS-style perceptual loss")
    p.add_argument("--lpips-lin", help="LPIPS linear heads (.pth) for the perceptual loss (optional)")
    p.add_argument("--perceptual-weight", type=float, default=1.0, help="weight of the perceptual loss")
    p.add_argument("--optimize-noise", action="store_true",
                   help="StyleGAN: optimize per-image noise maps too (written to noise.npz)")
    p.add_argument("--seed", type=int, default=0, help="seeds best-of-K / random init and latent noise")
    p.add_argument("--no-crop", action="store_true", help="stretch to a square instead of center-cropping")
    p.add_argument("--overwrite", action="store_true", help="replace a directory holding a different run")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ifgan_jax import invert as inv
    from ifgan_jax.errors import InputError
    from ifgan_jax.images import load_images

    if args.steps is not None and args.steps < 1:
        raise InputError(f"--steps must be >= 1, got {args.steps}")
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    if not 0 <= args.seed < 2**32:
        raise InputError(f"--seed must be in [0, 2**32), got {args.seed}")
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        raise InputError(f"--lr must be a positive number, got {args.lr}")
    init = args.init or inv.DEFAULT_INIT[args.space]
    inv.parse_init(init)
    if not Path(args.images).exists():
        raise InputError(f"image source {args.images} does not exist")
    if args.lpips_lin and not args.vgg16:
        raise InputError("--lpips-lin needs --vgg16")

    G = load_generator_from_args(args)
    vgg = inv.load_vgg16(args.vgg16, args.lpips_lin) if args.vgg16 else None
    plan = inv.make_plan(G, args.space, steps=args.steps, lr=args.lr, vgg16=vgg,
                         perceptual_weight=args.perceptual_weight, optimize_noise=args.optimize_noise,
                         micro_batch=args.micro_batch)
    loaded = load_images(args.images, G.resolution, crop=not args.no_crop)
    if len(loaded) == 0:
        reasons = "; ".join(f"{f['source']}: {f['reason']}" for f in loaded.failures[:3])
        raise InputError(f"no usable images in {args.images} ({len(loaded.failures)} failed: {reasons})")

    identity = {
        "model": G.name,
        "family": G.arch.family,
        "space": args.space,
        "steps": plan.steps,
        "lr": plan.lr,
        "init": init,
        "seed": int(args.seed),
        "crop": not args.no_crop,
        "batch_size": int(args.batch_size),
        "loss": plan.loss,
        "perceptual_weight": plan.perceptual_weight if vgg is not None else None,
        "vgg16_sha256": _file_sha256(args.vgg16),
        "lpips_lin_sha256": _file_sha256(args.lpips_lin),
        "optimize_noise": bool(args.optimize_noise),
        "count": len(loaded),
        "inputs_sha256": _inputs_sha256(loaded),
    }
    out = Path(args.out)
    if not _prepare_dir(out, identity, args.overwrite):
        return 0
    result = _run_batches(G, plan, loaded, out, identity, init, args.seed, vgg, show_progress=not args.quiet)
    psnr = np.asarray([m["psnr"] for m in result["images"] if m["psnr"] is not None], np.float64)
    summary = (f"mean PSNR {psnr.mean():.2f} dB (min {psnr.min():.2f})" if len(psnr) else "no finite PSNR")
    print(f"inverted {len(loaded)} images ({len(loaded.failures)} inputs skipped, {result['diverged']} diverged); "
          f"{summary}; wrote {out}")
    return 0


def _run_batches(G, plan, loaded, out: Path, identity: dict, init: str, seed: int, vgg,
                 *, show_progress: bool) -> dict[str, Any]:
    from ifgan_jax import invert as inv
    from ifgan_jax import io
    from ifgan_jax.progress import Progress

    n, bs = len(loaded), identity["batch_size"]
    starts = list(range(0, n, bs))
    parts_dir = out / BATCH_DIR
    parts_dir.mkdir(exist_ok=True)
    (out / "reconstructions").mkdir(exist_ok=True)
    parts: list[dict[str, Any] | None] = [_read_part(parts_dir / f"{b:05d}.npz", min(bs, n - s), plan)
                                          for b, s in enumerate(starts)]
    done = sum(min(bs, n - s) for s, p in zip(starts, parts, strict=True) if p is not None)
    progress = Progress(n, done, desc=f"invert {G.name}", enabled=show_progress)
    with io.PngWriter() as writer:
        for b, start in enumerate(starts):
            if parts[b] is not None:
                continue
            stop = min(start + bs, n)
            res = inv.invert(G, loaded.uint8[start:stop], plan.space, steps=plan.steps, lr=plan.lr,
                             loss=plan.loss, init=init, seed=seed, batch_size=bs, vgg16=vgg,
                             perceptual_weight=plan.perceptual_weight, optimize_noise=plan.optimize_noise,
                             micro_batch=plan.micro_batch)
            recon = np.clip((res.reconstructions + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
            paths = [out / "reconstructions" / f"{i:06d}.png" for i in range(start, stop)]
            writer.submit(paths, recon).result()  # PNGs on disk before the batch counts as done
            part = {"codes": res.codes, "mse": res.mse, "psnr": res.psnr, "loss": res.loss,
                    "steps": res.steps, "failed": res.failed}
            if res.noise is not None:
                part.update({f"noise:{k}": v for k, v in res.noise.items()})
            buf = _io.BytesIO()
            np.savez(buf, **part)
            io.atomic_write_bytes(parts_dir / f"{b:05d}.npz", buf.getvalue())
            parts[b] = part
            done += stop - start
            io.atomic_write_json(out / PROGRESS_FILE, {"done": done})
            progress.update(stop - start)
    progress.close()
    return _finish(out, loaded, parts, identity)


def _read_part(path: Path, count: int, plan) -> dict[str, Any] | None:
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


def _finish(out: Path, loaded, parts: list[dict[str, Any]], identity: dict) -> dict[str, Any]:
    """Merge the batches into the final files, then drop the batch parts."""
    from ifgan_jax import io

    merged = {k: np.concatenate([p[k] for p in parts]) for k in PART_KEYS}
    io.atomic_save_npy(out / "codes.npy", merged["codes"].astype(np.float32))
    noise_keys = sorted(k for k in parts[0] if k.startswith("noise:"))
    if noise_keys:
        buf = _io.BytesIO()
        np.savez(buf, **{k.removeprefix("noise:"): np.concatenate([p[k] for p in parts]) for k in noise_keys})
        io.atomic_write_bytes(out / "noise.npz", buf.getvalue())
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
    io.atomic_write_json(out / "metrics.json", {"images": images, "summary": summary})
    io.atomic_write_json(out / "failed.json", failed)
    _write_grid(out, loaded)
    meta = {**identity, "complete": True, "versions": _versions()}
    io.atomic_write_json(out / "meta.json", meta)
    shutil.rmtree(out / BATCH_DIR, ignore_errors=True)
    (out / PROGRESS_FILE).unlink(missing_ok=True)
    return {"images": images, "diverged": summary["diverged"]}


def _write_grid(out: Path, loaded) -> None:
    from PIL import Image

    from ifgan_jax import io

    k = min(GRID_IMAGES, len(loaded))
    recon = np.stack([np.asarray(Image.open(out / "reconstructions" / f"{i:06d}.png").convert("RGB"))
                      for i in range(k)])
    pairs = np.stack([loaded.uint8[:k], recon], axis=1)  # (k, 2, H, W, 3)
    per_row = min(GRID_PAIRS_PER_ROW, k)
    rows = -(-k // per_row)
    blank = np.full((rows * per_row - k, *pairs.shape[1:]), 255, np.uint8)
    cells = np.concatenate([pairs, blank]).reshape(rows, per_row * 2, *pairs.shape[2:])
    io.save_grid(out / "grid.png", cells)


def _prepare_dir(out: Path, identity: dict, overwrite: bool) -> bool:
    """False when this exact run is already complete; raises InputError for a different run."""
    from ifgan_jax import io

    meta = io.open_run_dir(out, identity, OUTPUT_NAMES, overwrite)
    if meta is None:
        io.atomic_write_json(out / "meta.json", {**identity, "complete": False, "versions": _versions()})
        return True
    if meta.get("complete"):
        print(f"{out}: this run is already complete", flush=True)
        return False
    return True


def _num(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None  # JSON has no NaN/inf


def _file_sha256(path: str | None) -> str | None:
    if not path:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _inputs_sha256(loaded) -> str:
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

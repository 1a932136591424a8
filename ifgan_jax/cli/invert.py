"""`invert`: latent codes for real images (GAN inversion), resumable per batch (see ifgan_jax/invert_run.py)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from ifgan_jax.cli.common import add_model_args, add_process_args, load_generator_from_args, start_processes


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
    add_process_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ifgan_jax import invert as inv
    from ifgan_jax import invert_run
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

    info = start_processes(args)  # before any JAX work
    G = load_generator_from_args(args)
    vgg = inv.load_vgg16(args.vgg16, args.lpips_lin) if args.vgg16 else None
    plan = inv.make_plan(G, args.space, steps=args.steps, lr=args.lr, vgg16=vgg,
                         perceptual_weight=args.perceptual_weight, optimize_noise=args.optimize_noise,
                         micro_batch=args.micro_batch)
    loaded = load_images(args.images, G.resolution, crop=not args.no_crop)
    if len(loaded) == 0:
        reasons = "; ".join(f"{f['source']}: {f['reason']}" for f in loaded.failures[:3])
        raise InputError(f"no usable images in {args.images} ({len(loaded.failures)} failed: {reasons})")
    identity = invert_run.run_identity(G, plan, loaded, init=init, seed=args.seed, crop=not args.no_crop,
                                       batch_size=args.batch_size, vgg16_path=args.vgg16,
                                       lpips_lin_path=args.lpips_lin, with_vgg=vgg is not None)
    out = Path(args.out)
    options = {"init": init, "seed": args.seed, "vgg": vgg, "overwrite": args.overwrite,
               "show_progress": not args.quiet}
    if info is not None:
        shared = invert_run.run_inversion_shared(G, plan, loaded, out, identity, info, **options)
        if shared["skipped"]:
            return 0
        start, stop = shared["share"]
        print(f"process {info.process_id}/{info.num_processes}: images {start}..{stop}"
              + ("" if shared["merged"] is None else f"; merged all {len(loaded)} into {out}"))
        result = shared["merged"]
    else:
        result = invert_run.run_inversion(G, plan, loaded, out, identity, **options)
    if result is None:
        return 0
    psnr = np.asarray([m["psnr"] for m in result["images"] if m["psnr"] is not None], np.float64)
    summary = (f"mean PSNR {psnr.mean():.2f} dB (min {psnr.min():.2f})" if len(psnr) else "no finite PSNR")
    print(f"inverted {len(loaded)} images ({len(loaded.failures)} inputs skipped, {result['diverged']} diverged); "
          f"{summary}; wrote {out}")
    return 0

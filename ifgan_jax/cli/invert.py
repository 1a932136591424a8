"""`invert`: latent codes for real images (GAN inversion), resumable per batch (see ifgan_jax/jobs/invert.py)."""

from __future__ import annotations

import argparse

from ifgan_jax.cli.common import add_model_args, add_process_args, add_space_arg, model_options, process_options
from ifgan_jax.inversion import DEFAULT_INIT, DEFAULT_LR, DEFAULT_STEPS, ENCODER_BATCH
from ifgan_jax.jobs.invert import COMMIT_BATCH


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("invert", help="find latent codes that reproduce given images (GAN inversion)")
    add_model_args(p, noise=True)
    p.add_argument("-i", "--images", required=True,
                   help="a folder of images, one image file, or a uint8 .npy of shape (N, H, W, 3)")
    p.add_argument("-o", "--out", required=True, help="output directory")
    add_space_arg(p, "latent space of the codes")
    p.add_argument("--steps", type=int, default=None, help=f"optimizer steps per image (default {DEFAULT_STEPS})")
    lrs = ", ".join(f"{lr} for {space}" for space, lr in DEFAULT_LR.items())
    p.add_argument("--lr", type=float, default=None, help=f"peak Adam learning rate (default {lrs})")
    p.add_argument("--batch-size", type=int, default=None, help="images optimized together (and per commit; "
                   f"default {COMMIT_BATCH}, {ENCODER_BATCH} with --steps 0)")
    inits = ", ".join(f"{init} for {space}" for space, init in DEFAULT_INIT.items())
    p.add_argument("--init", default=None, help=f"mean | random | encoder | best-of-K (default: {inits})")
    p.add_argument("--encoder", metavar="DIR",
                   help="a train-encoder directory for --init encoder (default: the model's shipped encoder); "
                        "--steps 0 keeps its codes as they are")
    p.add_argument("--domain-weight", type=float, default=0.0,
                   help="idinvert's domain regularizer: keep codes close to E(G(code)) (needs an encoder)")
    p.add_argument("--vgg16", help="torchvision VGG16 weights (.pth): adds an LPIPS-style perceptual loss")
    p.add_argument("--lpips-lin", help="LPIPS linear heads (.pth) for the perceptual loss (optional)")
    p.add_argument("--perceptual-weight", type=float, default=1.0, help="weight of the perceptual loss")
    p.add_argument("--optimize-noise", action="store_true",
                   help="StyleGAN: optimize per-image noise maps too (written to noise.npz)")
    p.add_argument("--seed", type=int, default=0, help="seeds best-of-K / random init and latent noise")
    p.add_argument("--no-crop", action="store_true", help="stretch to a square instead of center-cropping")
    p.add_argument("--align", action="store_true",
                   help="align each face by its 5 landmarks (dlib's model) to where the model's faces have them; "
                        "photos without a face found are skipped into failed.json; writes alignment.json")
    p.add_argument("--overwrite", action="store_true", help="replace a directory holding a different run")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    add_process_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ifgan_jax.jobs import invert

    invert.run(args.out, images=args.images, space=args.space, steps=args.steps, lr=args.lr, batch_size=args.batch_size,
               init=args.init, vgg16=args.vgg16, lpips_lin=args.lpips_lin, perceptual_weight=args.perceptual_weight,
               optimize_noise=args.optimize_noise, seed=args.seed, crop=not args.no_crop, overwrite=args.overwrite,
               show_progress=not args.quiet, align=args.align, encoder=args.encoder, domain_weight=args.domain_weight,
               **model_options(args), **process_options(args))
    return 0

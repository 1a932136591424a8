"""`train-encoder`: train an inversion encoder (image -> code) on generated pairs (ifgan_jax/jobs/train_encoder.py)."""

from __future__ import annotations

import argparse

from ifgan_jax.cli.common import add_model_args, add_space_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-encoder", help="train an encoder for fast inversion (invert --init encoder)")
    add_model_args(p)
    p.add_argument("-o", "--out", required=True, help="output directory (resumable: rerun the same command)")
    add_space_arg(p, "latent space the encoder predicts")
    p.add_argument("--steps", type=int, default=6000, help="training steps")
    p.add_argument("--batch-size", type=int, default=64, help="generated images per step")
    p.add_argument("--lr", type=float, default=1e-3, help="peak Adam learning rate (cosine decay)")
    p.add_argument("--seed", type=int, default=0, help="seeds the initial weights and the training codes")
    p.add_argument("--code-weight", type=float, default=1.0, help="weight of the code regression loss")
    p.add_argument("--pixel-weight", type=float, default=10.0, help="weight of the pixel loss |G(E(x)) - x|^2")
    p.add_argument("--pixel-batch", type=int, default=0,
                   help="images of each batch that get the pixel loss (0: all; fewer is faster)")
    p.add_argument("--vgg16", help="torchvision VGG16 weights (.pth): adds an LPIPS-style perceptual loss")
    p.add_argument("--lpips-lin", help="LPIPS linear heads (.pth) for the perceptual loss (optional)")
    p.add_argument("--perceptual-weight", type=float, default=1.0, help="weight of the perceptual loss")
    p.add_argument("--real-images", help="real photos (folder / .npy) for idinvert's in-domain pixel loss")
    p.add_argument("--real-weight", type=float, default=1.0, help="weight of the real-photo loss")
    p.add_argument("--checkpoint-every", type=int, default=250, help="steps between checkpoints")
    p.add_argument("--log-every", type=int, default=50, help="steps between metrics.jsonl lines")
    p.add_argument("--base-channels", type=int, default=32, help="encoder width of the first stage")
    p.add_argument("--max-channels", type=int, default=128, help="encoder width cap")
    p.add_argument("--hidden", type=int, default=256, help="width of the encoder's dense layer")
    p.add_argument("--overwrite", action="store_true", help="replace a directory holding a different run")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ifgan_jax.jobs import train_encoder

    train_encoder.run(args.out, model=args.model, weights=args.weights, devices=args.devices, space=args.space,
                      steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      code_weight=args.code_weight, pixel_weight=args.pixel_weight, pixel_batch=args.pixel_batch,
                      vgg16=args.vgg16, lpips_lin=args.lpips_lin, perceptual_weight=args.perceptual_weight,
                      real_images=args.real_images, real_weight=args.real_weight,
                      checkpoint_every=args.checkpoint_every, log_every=args.log_every,
                      base_channels=args.base_channels, max_channels=args.max_channels, hidden=args.hidden,
                      overwrite=args.overwrite, show_progress=not args.quiet)
    return 0

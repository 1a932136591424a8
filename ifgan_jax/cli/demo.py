"""`demo`: the whole InterFaceGAN method on the default model, offline, with a report."""

from __future__ import annotations

import argparse
from pathlib import Path

from ifgan_jax.cli.common import add_model_args, model_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="sample, score, train boundaries, edit, and write DIR/report.md")
    add_model_args(p)
    p.add_argument("-o", "--out", default="demo_out", help="output directory")
    p.add_argument("-n", "--num", type=int, default=20000, help="samples to train boundaries on")
    p.add_argument("--seed", type=int, default=0, help="sample seed")
    p.add_argument("--curve-samples", type=int, default=256, help="fresh samples edited to measure score curves")
    p.add_argument("--photo", type=Path, default=None,
                   help="face photo to invert and make smile (default: the bundled astronaut_face.png)")
    p.add_argument("--photo-steps", type=int, default=None,
                   help="Adam steps of the photo's inversion (default: the inversion's own default)")
    p.add_argument("--overwrite", action="store_true", help="replace a folder holding another run")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ifgan_jax.jobs import demo

    demo.run(args.out, num=args.num, seed=args.seed, curve_samples=args.curve_samples, photo=args.photo,
             photo_steps=args.photo_steps, show_progress=not args.quiet, overwrite=args.overwrite,
             **model_options(args))
    return 0

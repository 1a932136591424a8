"""`demo`: the whole InterFaceGAN method on the default model, offline, with a report."""

from __future__ import annotations

import argparse
from pathlib import Path

from ifgan_jax.cli.common import add_model_args, load_generator_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="sample, score, train boundaries, edit, and write DIR/report.md")
    add_model_args(p)
    p.add_argument("-o", "--out", default="demo_out")
    p.add_argument("-n", "--num", type=int, default=20000, help="samples to train boundaries on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--curve-samples", type=int, default=256, help="fresh samples edited to measure score curves")
    p.add_argument("--photo", type=Path, default=None,
                   help="face photo to invert and make smile (default: the bundled astronaut_face.png)")
    p.add_argument("--photo-steps", type=int, default=None,
                   help="Adam steps of the photo's inversion (default: the inversion's own default)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ifgan_jax.demo import run_demo
    from ifgan_jax.errors import InputError

    if args.num < 200:
        raise InputError(f"-n must be >= 200 for a meaningful boundary, got {args.num}")
    G = load_generator_from_args(args)
    # run_demo loads and checks the photo before anything else, so a bad --photo fails in seconds.
    summary = run_demo(G, args.out, count=args.num, seed=args.seed, curve_samples=args.curve_samples,
                       show_progress=not args.quiet, photo=args.photo, photo_steps=args.photo_steps)
    happy = summary["curves"]["happy"]["happy"]
    photo = summary["photo"]
    along = photo["curves"]["happy"]["happy"]
    print("val accuracy: " + ", ".join(f"{k} {v['accuracy']['val']:.3f}" for k, v in summary["boundaries"].items()))
    print(f"mean happy along the happy boundary: {happy[0]:.3f} -> {happy[-1]:.3f}")
    print(f"photo: happy {photo['reconstruction']['happy']:.2f} (reconstruction) -> {along[-1]:.2f} "
          f"({photo['distances'][-1]:+.0f}); the photo itself {photo['target']['happy']:.2f}, "
          f"reconstruction PSNR {photo['psnr']:.1f} dB")
    print(f"report: {args.out}/report.md")
    return 0

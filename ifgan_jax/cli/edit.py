"""`edit`: move codes along boundaries (InterFaceGAN's edit.py), vmapped over samples x boundaries x steps."""

from __future__ import annotations

import argparse

from ifgan_jax.cli.common import add_model_args, model_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("edit", help="edit codes along one or more boundaries")
    add_model_args(p)
    p.add_argument("-b", "--boundary", action="append", required=True, help="boundary .npy (1, d); repeatable")
    p.add_argument("-i", "--codes", help="codes to edit (.npy); else -n samples from --seed")
    p.add_argument("-n", "--num", type=int, help="number of sampled codes when no -i")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--out", required=True)
    p.add_argument("--space", default="z", choices=("z", "w", "wp"))
    p.add_argument("--start-distance", type=float, default=-3.0)
    p.add_argument("--end-distance", type=float, default=3.0)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--mode", choices=("absolute", "relative"), default="absolute",
                   help="absolute: move to signed distances from the hyperplane (2-D codes); relative: x + d n")
    p.add_argument("--layers", help="W+ layers to edit, e.g. 0-7 (W+ codes only)")
    p.add_argument("--truncation-aware", action="store_true",
                   help="scale W+ edits by psi on truncated layers (as HiGAN does)")
    p.add_argument("--no-images", action="store_true", help="write codes and grids only")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ifgan_jax.jobs import edit

    edit.run(args.out, boundary_paths=args.boundary, codes_path=args.codes, num=args.num, seed=args.seed,
             space=args.space, start_distance=args.start_distance, end_distance=args.end_distance, steps=args.steps,
             mode=args.mode, layers=args.layers, truncation_aware=args.truncation_aware,
             write_images=not args.no_images, show_progress=not args.quiet, **model_options(args))
    return 0

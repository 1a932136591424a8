"""`edit`: move codes along boundaries (InterFaceGAN's edit.py), vmapped over samples x boundaries x steps.

InterFaceGAN's own spellings are accepted: --model_name, --output_dir, --boundary_path,
--input_latent_codes_path, -s/--latent_space_type (Z, W, WP in any case), --start_distance, --end_distance.
"""

from __future__ import annotations

import argparse

from ifgan_jax.cli.common import add_model_args, add_space_arg, model_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("edit", help="edit codes along one or more boundaries")
    add_model_args(p, noise=True)
    p.add_argument("-b", "--boundary", "--boundary_path", dest="boundary", action="append", required=True,
                   help="boundary .npy (1, d); repeatable")
    p.add_argument("-i", "--codes", "--input_latent_codes_path", dest="codes",
                   help="codes to edit (.npy); else -n samples from --seed")
    p.add_argument("-n", "--num", type=int, help="number of sampled codes when no -i")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled codes")
    p.add_argument("-o", "--out", "--output_dir", dest="out", required=True, help="output directory")
    add_space_arg(p, "latent space of the codes and boundaries", interfacegan=True)
    p.add_argument("--start-distance", "--start_distance", dest="start_distance", type=float, default=-3.0,
                   help="first distance along each boundary")
    p.add_argument("--end-distance", "--end_distance", dest="end_distance", type=float, default=3.0,
                   help="last distance along each boundary")
    p.add_argument("--steps", type=int, default=10, help="distances from start to end, evenly spaced")
    p.add_argument("--mode", choices=("absolute", "relative"), default="absolute",
                   help="absolute: move to signed distances from the hyperplane (2-D codes); relative: x + d n")
    p.add_argument("--layers", help="W+ layers to edit, e.g. 0-7 (W+ codes only)")
    p.add_argument("--truncation-aware", action="store_true",
                   help="scale W+ edits by psi on truncated layers (as HiGAN does)")
    p.add_argument("--no-images", action="store_true", help="write codes and grids only")
    p.add_argument("--overwrite", action="store_true", help="replace the edit already in the output folder")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ifgan_jax.jobs import edit

    edit.run(args.out, boundary_paths=args.boundary, codes_path=args.codes, num=args.num, seed=args.seed,
             space=args.space, start_distance=args.start_distance, end_distance=args.end_distance, steps=args.steps,
             mode=args.mode, layers=args.layers, truncation_aware=args.truncation_aware,
             write_images=not args.no_images, overwrite=args.overwrite, show_progress=not args.quiet,
             **model_options(args))
    return 0

"""`sample`: InterFaceGAN's generate_data.py at scale (codes + images, streamed, resumable)."""

from __future__ import annotations

import argparse

from ifgan_jax.cli.common import add_model_args, add_process_args, load_generator_from_args, load_npy, start_processes


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="sample latent codes and images to a directory")
    add_model_args(p)
    p.add_argument("-n", "--num", type=int, default=None, help="number of samples (default: all of -i)")
    p.add_argument("-o", "--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0, help="sample i depends only on (seed, i)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--images", choices=("png", "npy", "none"), default="png",
                   help="PNG files, one uint8 images.npy (large N), or none")
    p.add_argument("--no-images", dest="images", action="store_const", const="none", help="same as --images none")
    p.add_argument("-i", "--codes", help="synthesize these codes (.npy) instead of sampling")
    p.add_argument("--space", default="z", choices=("z", "w", "wp"), help="latent space of -i codes")
    p.add_argument("--overwrite", action="store_true", help="replace a directory holding a different run")
    p.add_argument("--score", metavar="PREDICTOR", help="also score each image (fer, brightness, stats): "
                   "writes scores.npy and attributes.json in the same pass")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    add_process_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ifgan_jax.errors import InputError
    from ifgan_jax.sampling import run_sampling

    info = start_processes(args)  # before any JAX work
    codes = load_npy(args.codes) if args.codes else None
    if codes is None and args.num is None:
        raise InputError("give -n N (or -i CODES.npy)")
    if not 0 <= args.seed < 2**32:
        raise InputError(f"--seed must be in [0, 2**32), got {args.seed}")
    predictor = None
    if args.score:
        from ifgan_jax.predictors import load_predictor

        predictor = load_predictor(args.score)
    G = load_generator_from_args(args)
    if info is not None:
        from ifgan_jax.distributed import run_distributed_sampling

        result = run_distributed_sampling(G, args.out, info, count=args.num, batch_size=args.batch_size,
                                          codes=codes, overwrite=args.overwrite, image_format=args.images,
                                          codes_space=args.space, seed=args.seed, show_progress=not args.quiet,
                                          predictor=predictor)
        if not result["skipped"]:
            start, stop = result["share"]
            rate = f", {result['rate']:.1f} img/s" if result["rate"] else ""
            merged = (f"; merged {result['count']} samples into {result['out_dir']}" if result["merged"]
                      else "; the merge is left to the process that finishes last" if not info.runtime else "")
            print(f"process {info.process_id}/{info.num_processes}: samples {start}..{stop}{rate}{merged}")
        return 0
    result = run_sampling(G, args.out, count=args.num, seed=args.seed, batch_size=args.batch_size,
                          image_format=args.images, codes=codes, codes_space=args.space,
                          overwrite=args.overwrite, show_progress=not args.quiet, predictor=predictor)
    if not result["skipped"]:
        print(f"wrote {result['count']} samples to {result['out_dir']} ({result['rate']:.1f} img/s)")
    return 0

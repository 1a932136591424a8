"""`train-boundary`: InterFaceGAN's train_boundary.py, one boundary per score column, batched on device.

InterFaceGAN's own spellings are accepted: the `train_boundary` subcommand name, --output_dir,
--latent_codes_path, --scores_path, -n/--chosen_num_or_ratio, -r/--split_ratio, -V/--invalid_value.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-boundary", aliases=["train_boundary"],
                       help="train semantic boundaries (linear SVMs) from codes and scores",
                       description="Label the top/bottom-scored codes, fit a linear SVM per score column and "
                                   "write its unit normal (InterFaceGAN's train_boundary.py).")
    p.add_argument("-c", "--codes", "--latent_codes_path", dest="codes", required=True,
                   help="latent codes .npy, (N, d) or W+ (N, L, d)")
    p.add_argument("-s", "--scores", "--scores_path", dest="scores", required=True,
                   help="scores .npy, (N,) or (N, K): one boundary per column")
    p.add_argument("-o", "--out", "--output_dir", dest="out", required=True,
                   help="output directory (created if missing)")
    p.add_argument("--attribute", action="append", metavar="NAME",
                   help="name of a score column, in order; repeat once per column")
    p.add_argument("--attributes-json", metavar="FILE",
                   help="JSON list of column names (default: attributes.json next to SCORES, if present)")
    p.add_argument("-n", "--chosen-num-or-ratio", "--chosen_num_or_ratio", dest="chosen_num_or_ratio", type=float,
                   default=0.02,
                   help="positives (and negatives) per attribute: a ratio of N in (0, 1], else a count")
    p.add_argument("-r", "--split-ratio", "--split_ratio", dest="split_ratio", type=float, default=0.7,
                   help="train share of the chosen rows")
    p.add_argument("-V", "--invalid-value", "--invalid_value", dest="invalid_value", type=float, default=None,
                   help="drop rows whose score equals this (NaN/inf scores are always dropped)")
    p.add_argument("--solver", choices=("jax", "svc"), default="jax",
                   help="jax: all attributes in one jitted program (default); svc: scikit-learn SVC, as "
                        "InterFaceGAN")
    p.add_argument("--seed", type=int, default=0, help="train/val shuffle seed")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ifgan_jax.jobs import train_boundary

    train_boundary.run(args.out, codes=args.codes, scores=args.scores, attributes=args.attribute,
                       attributes_json=args.attributes_json, chosen_num_or_ratio=args.chosen_num_or_ratio,
                       split_ratio=args.split_ratio, invalid_value=args.invalid_value, solver=args.solver,
                       seed=args.seed, show_progress=not args.quiet)
    return 0

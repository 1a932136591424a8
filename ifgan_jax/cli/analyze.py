"""`analyze`: the paper's analyses in one command (correlation, boundary cosines, re-scoring, conditional edits)."""

from __future__ import annotations

import argparse

from ifgan_jax.cli.common import add_model_args, model_options
from ifgan_jax.jobs.analyze import DEFAULT_NUM


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="attribute correlation, boundary cosines, re-scoring and conditional "
                                       "manipulation: DIR/analysis.json, report.md, heatmaps")
    add_model_args(p)
    p.add_argument("-o", "--out", required=True, help="output directory (rerun the same command to resume)")
    p.add_argument("--predictor", default="fer,age,gender,pose",
                   help="predictors scored and analysed, comma-separated")
    p.add_argument("-n", "--num", type=int, default=None, help=f"samples to sample and score (default {DEFAULT_NUM})")
    p.add_argument("--seed", type=int, default=0, help="sample seed; re-scoring uses indices N.. of it")
    p.add_argument("-c", "--codes", help="precomputed Z codes (.npy, N x d) instead of sampling; needs -s")
    p.add_argument("-s", "--scores", help="their scores (.npy, N x K) by --predictor; needs -c")
    p.add_argument("--rescore-samples", type=int, default=1000, help="fresh samples edited per boundary")
    p.add_argument("--distance", type=float, default=3.0, help="re-scoring moves samples to -D and +D")
    p.add_argument("--pairs", metavar="B|A,...",
                   help="conditional pairs, e.g. 'age|male,male|age' (edit B keeping A); default: chosen by "
                        "boundary cosine")
    p.add_argument("--min-cosine", type=float, default=0.25, help="|cosine| for a pair to be chosen")
    p.add_argument("--max-pairs", type=int, default=6, help="at most this many chosen pairs (0: none)")
    p.add_argument("--grid-samples", type=int, default=6, help="rows of each edit grid (0: no grids)")
    p.add_argument("--batch-size", type=int, default=256, help="samples per step")
    p.add_argument("--overwrite", action="store_true", help="replace a directory holding a different run")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ifgan_jax.jobs import analyze

    analyze.run(args.out, predictor=args.predictor, num=args.num, seed=args.seed, codes_path=args.codes,
                scores_path=args.scores, rescore_samples=args.rescore_samples, distance=args.distance,
                pairs=args.pairs, min_cosine=args.min_cosine, max_pairs=args.max_pairs,
                grid_samples=args.grid_samples, batch_size=args.batch_size, overwrite=args.overwrite,
                show_progress=not args.quiet, **model_options(args))
    return 0

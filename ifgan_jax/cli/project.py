"""`project`: conditional boundary, the primal made orthogonal to one or more condition boundaries."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("project", help="make a boundary orthogonal to condition boundaries (conditional editing)",
                       description="Project the primal boundary onto the orthogonal complement of the "
                                   "conditions and scale it to unit length (InterFaceGAN's project_boundary).")
    p.add_argument("-p", "--primal", required=True, help="primal boundary .npy, (1, d)")
    p.add_argument("-c", "--condition", nargs="+", required=True, metavar="COND",
                   help="condition boundary .npy files, (1, d) each")
    p.add_argument("-o", "--out", required=True, help="output .npy (1, d)")
    p.add_argument("--overwrite", action="store_true", help="replace the output file when it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ifgan_jax.jobs import project

    project.run(args.out, primal=args.primal, conditions=args.condition, overwrite=args.overwrite)
    return 0

"""`project`: conditional boundary, the primal made orthogonal to one or more condition boundaries."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("project", help="make a boundary orthogonal to condition boundaries (conditional editing)",
                       description="Project the primal boundary onto the orthogonal complement of the "
                                   "conditions and scale it to unit length (InterFaceGAN's project_boundary).")
    p.add_argument("-p", "--primal", required=True, help="primal boundary .npy, (1, d)")
    p.add_argument("-c", "--condition", nargs="+", required=True, metavar="COND",
                   help="condition boundary .npy files, (1, d) each")
    p.add_argument("-o", "--out", required=True, help="output .npy (1, d)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ifgan_jax.boundary import load_boundary, project_boundary, save_boundary
    from ifgan_jax.errors import InputError

    out = Path(args.out)
    if out.suffix != ".npy":
        raise InputError(f"-o must name a .npy file, got {out}")
    if not out.parent.is_dir():
        raise InputError(f"output folder {out.parent} does not exist")
    if out.is_dir():
        raise InputError(f"output {out} is a directory")
    primal = load_boundary(args.primal)
    conditions = [load_boundary(c) for c in args.condition]
    result = project_boundary(primal, *conditions)
    # Keep float64 when any input is float64 (InterFaceGAN's published boundaries are), else float32.
    dtype = np.result_type(np.float32, primal.dtype, *(c.dtype for c in conditions))
    save_boundary(out, result, dtype=dtype)
    def cosine(a: np.ndarray, b: np.ndarray) -> float:
        a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    worst = max(abs(cosine(result, c)) for c in conditions)
    print(f"wrote {out}: cosine with primal {cosine(result, primal):.4f}, "
          f"max |cosine| with conditions {worst:.1e}")
    return 0

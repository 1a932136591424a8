"""`train-boundary`: InterFaceGAN's train_boundary.py, one boundary per score column, batched on device."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-boundary", help="train semantic boundaries (linear SVMs) from codes and scores",
                       description="Label the top/bottom-scored codes, fit a linear SVM per score column and "
                                   "write its unit normal (InterFaceGAN's train_boundary.py).")
    p.add_argument("-c", "--codes", required=True, help="latent codes .npy, (N, d) or W+ (N, L, d)")
    p.add_argument("-s", "--scores", required=True, help="scores .npy, (N,) or (N, K): one boundary per column")
    p.add_argument("-o", "--out", required=True, help="output directory (created if missing)")
    p.add_argument("--attribute", action="append", metavar="NAME",
                   help="name of a score column, in order; repeat once per column")
    p.add_argument("--attributes-json", metavar="FILE",
                   help="JSON list of column names (default: attributes.json next to SCORES, if present)")
    p.add_argument("--chosen-num-or-ratio", type=float, default=0.02,
                   help="positives (and negatives) per attribute: a ratio of N in (0, 1], else a count "
                        "(default 0.02)")
    p.add_argument("--split-ratio", type=float, default=0.7, help="train share of the chosen rows (default 0.7)")
    p.add_argument("--invalid-value", type=float, default=None,
                   help="drop rows whose score equals this (NaN/inf scores are always dropped)")
    p.add_argument("--solver", choices=("jax", "svc"), default="jax",
                   help="jax: all attributes in one jitted program (default); svc: scikit-learn SVC, as "
                        "InterFaceGAN")
    p.add_argument("--seed", type=int, default=0, help="train/val shuffle seed (default 0)")
    p.set_defaults(func=run)


def _check_name(name: Any) -> str:
    from ifgan_jax.errors import InputError

    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name \
            or name.startswith(".") or "\0" in name:
        raise InputError(f"attribute name {name!r} cannot be used in a file name")
    return name


def attribute_names(args: argparse.Namespace, num_columns: int) -> list[str]:
    """Column names from --attribute, --attributes-json, attributes.json beside SCORES, or attr0.."""
    from ifgan_jax.errors import InputError

    if args.attribute and args.attributes_json:
        raise InputError("give --attribute or --attributes-json, not both")
    if args.attribute:
        names, source = list(args.attribute), "--attribute"
    else:
        path = Path(args.attributes_json) if args.attributes_json else Path(args.scores).parent / "attributes.json"
        if not path.is_file():
            if args.attributes_json:
                raise InputError(f"--attributes-json file {path} does not exist")
            return [f"attr{k}" for k in range(num_columns)]
        try:
            names = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InputError(f"cannot read attribute names from {path}: {err}") from None
        if not isinstance(names, list):
            raise InputError(f"{path} must hold a JSON list of column names, got {type(names).__name__}")
        source = str(path)
    if len(names) != num_columns:
        raise InputError(f"{source} gives {len(names)} names but the scores have {num_columns} columns")
    names = [_check_name(n) for n in names]
    if len(set(names)) != len(names):
        raise InputError(f"{source} repeats an attribute name: {names}")
    return names


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ifgan_jax import files
    from ifgan_jax.boundary import save_boundary, train_boundaries
    from ifgan_jax.cli.common import load_npy
    from ifgan_jax.errors import InputError

    t0 = time.perf_counter()
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"output {out} exists and is not a directory")
    codes = load_npy(args.codes, "codes")
    scores = load_npy(args.scores, "scores")
    if scores.ndim not in (1, 2):
        raise InputError(f"scores must have shape (N,) or (N, K), got {scores.shape}")
    num_columns = 1 if scores.ndim == 1 else scores.shape[1]
    if num_columns < 1:
        raise InputError(f"scores have no columns: {scores.shape}")
    names = attribute_names(args, num_columns)
    t_load = time.perf_counter() - t0
    # Everything is validated and trained in memory before the first file is written.
    trained = train_boundaries(codes, scores, chosen_num_or_ratio=args.chosen_num_or_ratio,
                               split_ratio=args.split_ratio, invalid_value=args.invalid_value,
                               solver=args.solver, seed=args.seed, names=names)
    written = ["boundary.npy"] if num_columns == 1 else [f"{n}_boundary.npy" for n in names]
    report = {
        "codes": str(args.codes), "scores": str(args.scores), "codes_shape": list(codes.shape),
        "solver": args.solver, "seed": args.seed, "chosen_num_or_ratio": args.chosen_num_or_ratio,
        "split_ratio": args.split_ratio, "invalid_value": args.invalid_value,
        "timing": {"load_s": t_load, "train_s": trained.seconds, "total_s": None},
        "attributes": {name: {"file": f, **rep} for name, f, rep in zip(names, written, trained.reports, strict=True)},
    }
    out.mkdir(parents=True, exist_ok=True)
    for k, f in enumerate(written):
        save_boundary(out / f, trained.boundaries[k : k + 1], dtype=np.float32)
    report["timing"]["total_s"] = time.perf_counter() - t0
    files.atomic_write_json(out / "report.json", report)
    for name, rep in zip(names, trained.reports, strict=True):
        acc = rep["accuracy"]
        val = "n/a" if acc["val"] is None else f"{acc['val']:.4f}"
        print(f"{name}: train {rep['counts']['train']} val {rep['counts']['val']} "
              f"(dropped {rep['counts']['invalid'] + rep['counts']['nonfinite']}), val accuracy {val}")
    print(f"wrote {len(written)} boundar{'y' if len(written) == 1 else 'ies'} and report.json to {out} "
          f"({report['timing']['total_s']:.1f} s)")
    return 0

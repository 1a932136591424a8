"""`edit`: move codes along boundaries (InterFaceGAN's edit.py), vmapped over samples x boundaries x steps."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ifgan_jax.cli.common import add_model_args, load_generator_from_args, load_npy


def parse_layers(text: str | None, num_layers: int) -> tuple[int, ...] | None:
    """'0-7' or '0,2,4' -> layer indices (validated against the model's W+ layers)."""
    from ifgan_jax.errors import InputError

    if not text:
        return None
    layers: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            layers.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise InputError(f"--layers must look like 0-7 or 0,2,4, got {text!r}") from None
    if not num_layers:
        raise InputError("--layers needs a model with W+ codes")
    bad = [i for i in layers if not 0 <= i < num_layers]
    if bad:
        raise InputError(f"--layers {bad} out of range for {num_layers} W+ layers")
    return tuple(sorted(set(layers)))


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
    from ifgan_jax.edit_run import check_boundaries, run_edit
    from ifgan_jax.errors import InputError

    boundaries = [load_npy(path, "boundary") for path in args.boundary]
    if args.codes is None and args.num is None:
        raise InputError("give -i CODES.npy or -n N")
    if args.codes is None and args.space != "z":
        raise InputError("sampled codes are Z codes; pass -i for W/W+ codes")
    G = load_generator_from_args(args)
    names = [Path(p).name for p in args.boundary]
    bounds = check_boundaries(G, boundaries, args.space, names)
    codes = load_npy(args.codes) if args.codes else G.sample_latents(args.seed, 0, args.num)
    layers = parse_layers(args.layers, G.num_layers)
    if layers is not None and args.space != "wp":
        raise InputError("--layers applies to W+ codes (--space wp)")
    strength = None
    if args.truncation_aware:
        psi = getattr(G.config, "truncation_psi", None)
        if args.space != "wp" or psi is None:
            raise InputError("--truncation-aware applies to W+ codes of a model with truncation")
        cut = min(G.config.truncation_layers, G.num_layers)
        strength = np.array([psi] * cut + [1.0] * (G.num_layers - cut), np.float32)
    result = run_edit(G, np.asarray(codes), bounds, args.out, names=names, space=args.space,
                      start_distance=args.start_distance, end_distance=args.end_distance, steps=args.steps,
                      mode=args.mode, layers=layers, layer_strength=strength, write_images=not args.no_images,
                      show_progress=not args.quiet)
    print(f"wrote {result['count']} edited images to {result['out_dir']} ({result['rate']:.1f} img/s)")
    return 0

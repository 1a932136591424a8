"""`score`: attribute scores for codes (synthesized and scored on device, no images written) or images."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ifgan_jax.cli.common import add_model_args, load_generator_from_args, load_npy


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="score codes (synthesize + score fused) or a folder of images")
    add_model_args(p)
    p.add_argument("-i", "--input", required=True, help="CODES.npy, or a folder of images")
    p.add_argument("-o", "--out", required=True, help="output directory (scores.npy, attributes.json)")
    p.add_argument("--predictor", default="fer", help="fer | brightness | stats (default fer)")
    p.add_argument("--space", default="z", choices=("z", "w", "wp"), help="latent space of the codes")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--image-size", type=int, default=64, help="images are center-cropped and resized to this")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ifgan_jax import files
    from ifgan_jax.errors import InputError
    from ifgan_jax.predictors import load_predictor

    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    predictor = load_predictor(args.predictor)
    source = Path(args.input)
    out = Path(args.out)
    if source.is_dir():
        from ifgan_jax.images import load_images

        # FER resizes to its own 64x64 input; keep the images at that size to bound memory.
        loaded = load_images(source, args.image_size)
        if loaded.failures:
            print(f"skipped {len(loaded.failures)} unreadable files (see {out / 'failed.json'})")
        scores = np.asarray(predictor(loaded.uint8, batch_size=args.batch_size))
        names = list(loaded.names)
    else:
        G = load_generator_from_args(args)
        codes = G.check_codes(load_npy(source), args.space)
        from ifgan_jax.scoring import score_codes

        scores = np.asarray(score_codes(G, codes, predictor, space=args.space, batch_size=args.batch_size))
        names, loaded = None, None
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create {out}: {err.strerror or err}") from None
    files.atomic_save_npy(out / "scores.npy", scores.astype(np.float32))
    files.atomic_write_json(out / "attributes.json", list(predictor.labels))
    if names is not None:
        files.atomic_write_json(out / "images.json", names)
        if loaded.failures:
            files.atomic_write_json(out / "failed.json", loaded.failures)
    means = ", ".join(f"{label} {m:.3f}" for label, m in zip(predictor.labels, scores.mean(0), strict=True))
    print(f"scored {len(scores)} samples -> {out / 'scores.npy'} (mean: {means})")
    return 0

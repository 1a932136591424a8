"""`score`: attribute scores for codes (synthesized and scored on device, no images written) or images."""

from __future__ import annotations

import argparse

from ifgan_jax.cli.common import add_model_args, add_space_arg, model_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="score codes (synthesize + score fused) or a folder of images")
    add_model_args(p)
    p.add_argument("-i", "--input", required=True, help="CODES.npy, or a folder of images")
    p.add_argument("-o", "--out", required=True, help="output directory (scores.npy, attributes.json)")
    p.add_argument("--predictor", default="fer",
                   help="fer | age | gender | landmarks5 | pose | brightness | stats, or several fused: "
                        "fer,age,gender,pose")
    add_space_arg(p, "latent space of the codes")
    p.add_argument("--batch-size", type=int, default=256, help="images synthesized and scored per step")
    p.add_argument("--image-size", type=int, default=64, help="images are center-cropped and resized to this")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ifgan_jax.jobs import score

    score.run(args.out, source=args.input, predictor=args.predictor, space=args.space, batch_size=args.batch_size,
              image_size=args.image_size, show_progress=not args.quiet, **model_options(args))
    return 0

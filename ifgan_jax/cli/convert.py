"""`convert`: an InterFaceGAN `.pth` or NVIDIA `.pkl` generator -> a converted model directory."""

from __future__ import annotations

import argparse

from converters.generator_file import KINDS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert",
                       help="convert PGGAN/StyleGAN/StyleGAN2/StyleGAN3 weights (.pth, .pt, .pkl) to a model directory")
    p.add_argument("--weights", required=True, help="InterFaceGAN .pth, NVIDIA's TF or PyTorch .pkl, or rosinality .pt")
    p.add_argument("-o", "--out", required=True, help="model directory to write (replaced if it exists)")
    p.add_argument("--kind", choices=KINDS, default=None,
                   help="generator family (default: inferred from the file)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ifgan_jax.jobs import convert

    convert.run(args.out, weights=args.weights, kind=args.kind)
    return 0

"""`convert`: an InterFaceGAN `.pth` or NVIDIA `.pkl` generator -> a converted model directory."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert PGGAN/StyleGAN weights (.pth or NVIDIA .pkl) to a model directory")
    p.add_argument("--weights", required=True, help="InterFaceGAN .pth, or NVIDIA's original .pkl")
    p.add_argument("-o", "--out", required=True, help="model directory to write (replaced if it exists)")
    p.add_argument("--kind", choices=("pggan", "stylegan"), default=None,
                   help="generator family (default: inferred from the file)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from converters.interfacegan import convert_interfacegan_file
    from ifgan_jax.errors import InputError
    from ifgan_jax.model_cache import sha256_file
    from ifgan_jax.store import save_model

    weights = Path(args.weights)
    if not weights.is_file():
        raise InputError(f"weights file {weights} does not exist")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"output {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / "model.json").is_file():
        raise InputError(f"output {out} is a non-empty directory that is not a converted model; not replacing it")
    fmt = "nvidia-pkl" if weights.suffix.lower() == ".pkl" else "interfacegan-pth"
    # Everything is converted in memory first; save_model writes a temp dir and renames, so a failure
    # leaves no half-written model behind.
    family, config, params, buffers = convert_interfacegan_file(weights, kind=args.kind)
    source = {"path": str(weights.absolute()), "sha256": sha256_file(weights), "format": fmt}
    directory = save_model(out, family=family, config=dataclasses.asdict(config), params=params,
                           buffers=buffers, source=source)
    print(f"converted {family} {config.resolution}x{config.resolution} from {weights} to {directory}")
    return 0

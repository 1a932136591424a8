"""`convert`: an InterFaceGAN `.pth` or NVIDIA `.pkl` generator -> a converted model directory."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from converters.generator_file import convert_generator_file
from ifgan_jax.errors import InputError
from ifgan_jax.files import sha256_file
from ifgan_jax.zoo.store import save_model


def run(out_dir: str, *, weights: str, kind: str | None = None) -> dict[str, Any]:
    """Convert `weights` into the model directory `out_dir` (replacing a converted model there) and say so."""
    weights_path = Path(weights)
    if not weights_path.is_file():
        raise InputError(f"weights file {weights_path} does not exist")
    out_path = Path(out_dir)
    if out_path.exists() and not out_path.is_dir():
        raise InputError(f"output {out_path} exists and is not a directory")
    if out_path.is_dir() and any(out_path.iterdir()) and not (out_path / "model.json").is_file():
        raise InputError(f"output {out_path} is a non-empty directory that is not a converted model; not replacing it")
    # Everything is converted in memory first; save_model writes a temp dir and renames, so a failure
    # leaves no half-written model behind.
    family, config, params, buffers = convert_generator_file(weights_path, kind=kind)
    pickle = weights_path.suffix.lower() == ".pkl"
    if family in ("pggan", "stylegan"):
        fmt = "nvidia-pkl" if pickle else "interfacegan-pth"
    else:
        fmt = "nvidia-pkl" if pickle else "rosinality-pt"
    source = {"path": str(weights_path.absolute()), "sha256": sha256_file(weights_path), "format": fmt}
    directory = save_model(out_path, family=family, config=dataclasses.asdict(config), params=params,
                           buffers=buffers, source=source)
    print(f"converted {family} {config.resolution}x{config.resolution} from {weights_path} to {directory}")
    return {"family": family, "directory": str(directory)}

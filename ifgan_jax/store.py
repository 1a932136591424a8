"""Converted-model directories: `model.json` (family, config, source) + an orbax checkpoint of the arrays."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ifgan_jax.errors import InputError

FORMAT_VERSION = 1
MANIFEST = "model.json"
ARRAYS = "arrays"


def save_model(
    directory: str | os.PathLike,
    *,
    family: str,
    config: dict[str, Any],
    params: dict[str, Any],
    buffers: dict[str, Any],
    source: dict[str, Any],
) -> Path:
    """Write a converted model atomically (temp dir, then rename) and return its path."""
    import orbax.checkpoint as ocp

    directory = Path(directory).absolute()
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        tree = {"params": _to_numpy(params), "buffers": _to_numpy(buffers)}
        with ocp.StandardCheckpointer() as ckpt:
            ckpt.save(tmp / ARRAYS, tree)
        manifest = {"format_version": FORMAT_VERSION, "family": family, "config": config, "source": source}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """The `model.json` of a converted-model directory, validated."""
    path = Path(directory) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"{directory} is not a converted model directory ({MANIFEST}: {err})") from None
    if manifest.get("format_version") != FORMAT_VERSION or "family" not in manifest:
        raise InputError(f"{path}: unsupported model format {manifest.get('format_version')!r}")
    return manifest


def load_model(directory: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Return (manifest, params, buffers) of a converted-model directory as numpy pytrees."""
    import orbax.checkpoint as ocp

    directory = Path(directory).absolute()
    manifest = read_manifest(directory)
    try:
        with ocp.StandardCheckpointer() as ckpt:
            tree = ckpt.restore(directory / ARRAYS)
    except Exception as err:  # orbax raises many types for a damaged directory
        raise InputError(f"{directory}: cannot read converted arrays ({type(err).__name__}: {err})") from None
    return manifest, tree.get("params", {}), tree.get("buffers", {})


def is_model_dir(path: str | os.PathLike) -> bool:
    """Whether `path` looks like a converted-model directory."""
    return (Path(path) / MANIFEST).is_file()


def _to_numpy(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {str(k): _to_numpy(v) for k, v in tree.items()}
    return np.asarray(tree)

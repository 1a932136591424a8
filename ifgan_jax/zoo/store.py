"""Converted-model directories: `model.json` (family, config, source, and the size and sha256 of every file of the
arrays) + an orbax checkpoint of the arrays.

The checksums are verified before orbax reads anything: a truncated or altered file is named in one line
(orbax itself fails on some with background-thread tracebacks), and the cache re-converts a damaged entry.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ifgan_jax.errors import InputError
from ifgan_jax.files import sha256_file

FORMAT_VERSION = 1
MANIFEST = "model.json"
ARRAYS = "arrays"
FILES_KEY = "array_files"  # model.json: {path under arrays/: [size, sha256]} (absent in directories made before it)
_VERIFIED: set[tuple] = set()  # (directory, its files' sizes and mtimes) already hashed by this process


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
        manifest = {"format_version": FORMAT_VERSION, "family": family, "config": config, "source": source,
                    FILES_KEY: _file_table(tmp / ARRAYS)}
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
    reason = damage(directory, manifest)
    if reason is not None:
        raise InputError(f"{directory} is damaged ({reason}); convert the weights again (run.py convert)")
    try:
        with ocp.StandardCheckpointer() as ckpt:
            tree = ckpt.restore(directory / ARRAYS)
    except Exception as err:  # orbax raises many types for a damaged directory
        raise InputError(f"{directory}: cannot read converted arrays ({type(err).__name__}: {err})") from None
    return manifest, tree.get("params", {}), tree.get("buffers", {})


def damage(directory: str | os.PathLike, manifest: dict[str, Any] | None = None) -> str | None:
    """Why the arrays of a converted-model directory do not match its model.json's checksums, or None when they do
    (or when the directory predates the checksums)."""
    directory = Path(directory).absolute()
    manifest = read_manifest(directory) if manifest is None else manifest
    table = manifest.get(FILES_KEY)
    if not isinstance(table, dict):
        return None
    stats = {}
    for name, (size, _) in sorted(table.items()):
        path = directory / ARRAYS / name
        if not path.is_file():
            return f"{ARRAYS}/{name} is missing"
        stats[name] = path.stat()
        if stats[name].st_size != size:
            return f"{ARRAYS}/{name} has {stats[name].st_size} bytes, expected {size}"
    key = (str(directory), tuple((name, st.st_size, st.st_mtime_ns) for name, st in stats.items()))
    if key in _VERIFIED:
        return None  # hashed already by this process, and unchanged since
    for name, (_, digest) in sorted(table.items()):
        if sha256_file(directory / ARRAYS / name) != digest:
            return f"{ARRAYS}/{name} has changed (sha256 differs)"
    _VERIFIED.add(key)
    return None


def check_shapes(directory: str | os.PathLike, trees: dict[str, Any], expected: dict[str, Any]) -> None:
    """InputError unless the loaded `trees` ({"params": ..., "buffers": ...}) have exactly the `expected` shapes
    (the architecture that model.json's config builds): a config edited apart from its arrays fails here, in one
    line, instead of inside a jitted call after some output was written."""
    got, want = _shapes(trees), _shapes(expected)
    if got == want:
        return
    problems = [f"{k}: {got.get(k, 'missing')} in the arrays, {want.get(k, 'absent')} for the config"
                for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k)]
    more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
    raise InputError(f"{directory}: model.json's config does not match its arrays ({'; '.join(problems[:3])}{more}); "
                     "convert the weights again")


def _shapes(tree: Any, prefix: str = "") -> dict[str, tuple[int, ...]]:
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in _shapes(sub, f"{prefix}{key}/").items()}
    return {prefix.rstrip("/"): tuple(tree.shape) if hasattr(tree, "shape") else np.shape(tree)}


def _file_table(folder: Path) -> dict[str, list]:
    return {p.relative_to(folder).as_posix(): [p.stat().st_size, sha256_file(p)]
            for p in sorted(folder.rglob("*")) if p.is_file()}


def is_model_dir(path: str | os.PathLike) -> bool:
    """Whether `path` looks like a converted-model directory."""
    return (Path(path) / MANIFEST).is_file()


def _to_numpy(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {str(k): _to_numpy(v) for k, v in tree.items()}
    return np.asarray(tree)

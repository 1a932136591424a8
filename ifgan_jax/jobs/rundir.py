"""The run-directory contract every resumable job shares.

A job's output folder holds `meta.json` = the run's identity (everything that fixes its outputs), the
library versions and `complete`. Rerunning the same command on a folder resumes it (`.progress.json`
counts the committed items), a folder holding a different run is refused unless `--overwrite` (which
deletes the job's own output names only), and a complete run is left as it is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import flax
import jax
import numpy as np
import optax

import ifgan_jax
from ifgan_jax import files
from ifgan_jax.errors import InputError

META_FILE = "meta.json"
PROGRESS_FILE = ".progress.json"


def versions() -> dict[str, str]:
    """Library versions recorded in every meta.json."""
    return {"ifgan_jax": ifgan_jax.__version__, "jax": jax.__version__, "flax": flax.__version__,
            "optax": optax.__version__, "numpy": np.__version__}


def open_run_dir(out: Path, identity: dict[str, Any], output_names: Iterable[str], overwrite: bool) -> dict | None:
    """Prepare `out` for a resumable run named by `identity` (keys of its meta.json).

    Returns the existing meta.json when `out` holds this same run (to resume, or already complete) and None
    for a fresh, writable directory. A different run or unrelated files raise InputError, unless `overwrite`,
    which first deletes `output_names`.
    """
    if out.exists() and not out.is_dir():
        raise InputError(f"output {out} exists and is not a directory")
    if overwrite and out.is_dir():
        files.remove_outputs(out, output_names)
    meta_path = out / META_FILE
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError:
            meta = {}
        previous = {k: meta.get(k) for k in identity}
        if previous != identity:
            diff = ", ".join(f"{k}: {previous[k]!r} -> {identity[k]!r}" for k in identity if previous[k] != identity[k])
            raise InputError(f"{out} holds a different run ({diff}); pass --overwrite to replace it")
        files.remove_temporaries(out)  # a killed run's half-written files: the resumed run ends as a clean one
        return meta
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out} is not empty and holds no ifgan run; choose another directory or pass --overwrite")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise InputError(f"cannot write to {out}: {err.strerror or err}") from None
    return None


def start_run(out: Path, identity: dict[str, Any], output_names: Iterable[str], overwrite: bool) -> int | None:
    """Open `out` for this run: items already committed (0 when fresh), or None when it is complete.

    A fresh folder gets its meta.json (identity, versions, complete false) at once.
    """
    meta = open_run_dir(out, identity, output_names, overwrite)
    if meta is None:
        files.atomic_write_json(out / META_FILE, {**identity, "versions": versions(), "complete": False})
        return 0
    if meta.get("complete"):
        print(f"{out}: this run is already complete", flush=True)
        return None
    return read_progress(out)


def read_progress(out: Path) -> int:
    """Items committed by an earlier, interrupted run (0 when none were)."""
    try:
        return int(json.loads((out / PROGRESS_FILE).read_text())["done"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def write_progress(out: Path, done: int) -> None:
    """Record that the first `done` items are on disk."""
    files.atomic_write_json(out / PROGRESS_FILE, {"done": int(done)})


def finish_run(out: Path, identity: dict[str, Any], **extra: Any) -> None:
    """Mark the run complete (meta.json rewritten atomically) and drop its progress file."""
    files.atomic_write_json(out / META_FILE, {**identity, **extra, "versions": versions(), "complete": True})
    (out / PROGRESS_FILE).unlink(missing_ok=True)


def is_complete(out: Path, identity: dict[str, Any]) -> bool:
    """True when `out` holds this run, finished."""
    meta = files.read_json(out / META_FILE) or {}
    return bool(meta.get("complete")) and all(meta.get(k) == v for k, v in identity.items())

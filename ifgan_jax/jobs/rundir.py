"""The run-directory contract every resumable job shares.

A job's output folder holds `meta.json` = the run's identity (everything that fixes its outputs), the
library versions and `complete`. Rerunning the same command on a folder resumes it (`.progress.json`
counts the committed items), a folder holding a different run is refused unless `--overwrite` (which
deletes the job's own output names only), and a complete run is left as it is.

One writer per folder: the process that opens a folder holds an exclusive `flock` on its `.ifgan.lock` until
the run finishes (or the process ends: the kernel drops the lock of a killed process, so nothing stays
stuck); a second process is refused in one line naming the holder's pid. Multi-process jobs lock each
process's part folder, and their merge has its own lock (jobs/multiprocess.py).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
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
LOCK_FILE = ".ifgan.lock"  # holds "pid host" of the writer; removed when its run finishes
LOCK_ATTEMPTS = 5  # retries when a finishing writer removes the lock file between our open and flock
_HELD: dict[Path, int] = {}  # folder -> descriptor of the lock this process holds


def versions() -> dict[str, str]:
    """Library versions recorded in every meta.json."""
    return {"ifgan_jax": ifgan_jax.__version__, "jax": jax.__version__, "flax": flax.__version__,
            "optax": optax.__version__, "numpy": np.__version__}


def open_run_dir(out: Path, identity: dict[str, Any], output_names: Iterable[str], overwrite: bool, *,
                 lock: bool = True) -> dict | None:
    """Prepare `out` for a resumable run named by `identity` (keys of its meta.json), locked for this process.

    Returns the existing meta.json when `out` holds this same run (to resume, or already complete) and None
    for a fresh, writable directory. A different run or unrelated files raise InputError, unless `overwrite`,
    which first deletes `output_names`; so does a folder another process is writing. `lock=False` only checks
    (for a folder whose writes another lock guards, such as a multi-process merge).
    """
    if str(out).strip() == "":
        raise InputError("the output folder must be a path, got an empty string")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"output {out} exists and is not a directory")
    if lock:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(f"cannot write to {out}: {err.strerror or err}") from None
        acquire_lock(out)
    try:
        return _open_locked(out, identity, output_names, overwrite)
    except BaseException:
        if lock:
            release_lock(out)
        raise


def _open_locked(out: Path, identity: dict[str, Any], output_names: Iterable[str], overwrite: bool) -> dict | None:
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
    if out.is_dir() and any(p.name != LOCK_FILE for p in out.iterdir()) and not overwrite:
        raise InputError(f"{out} is not empty and holds no ifgan run; choose another directory or pass --overwrite")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise InputError(f"cannot write to {out}: {err.strerror or err}") from None
    return None


def acquire_lock(out: Path) -> None:
    """Hold `out`'s writer lock for this process (re-entrant); InputError naming the pid when another holds it.

    flock is dropped by the kernel when its holder dies (kill -9 included), so a stale lock file is harmless.
    A filesystem without locks (ENOLCK, EOPNOTSUPP) runs unlocked rather than not at all.
    """
    key = Path(os.path.abspath(out))
    if key in _HELD:
        return
    path = key / LOCK_FILE
    for _ in range(LOCK_ATTEMPTS):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, files.FILE_MODE)
        except OSError as err:
            raise InputError(f"cannot write to {out}: {err.strerror or err}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(fd)
            os.close(fd)
            raise InputError(f"{out} is being written by another process ({holder}); wait for it to finish or choose "
                             "another folder") from None
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                return
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder finished and removed this file after we opened it: take the new one
    else:
        raise InputError(f"{out}: could not take its lock file {LOCK_FILE}; is another process starting there?")
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
    _HELD[key] = fd


def _lock_holder(fd: int) -> str:
    """'pid P' (and 'on HOST' when another machine holds it) from a lock file, as far as it can be read."""
    try:
        pid, host = os.pread(fd, 300, 0).decode(errors="replace").split()[:2]
    except (OSError, ValueError):
        return "pid unknown"
    return f"pid {pid}" + ("" if host == socket.gethostname() else f" on {host}")


def release_lock(out: Path) -> None:
    """Give up `out`'s writer lock and remove its lock file (a no-op when this process does not hold it)."""
    fd = _HELD.pop(Path(os.path.abspath(out)), None)
    if fd is None:
        return
    (Path(out) / LOCK_FILE).unlink(missing_ok=True)  # while still held, so no one locks a file about to vanish
    os.close(fd)


def start_run(out: Path, identity: dict[str, Any], output_names: Iterable[str], overwrite: bool) -> int | None:
    """Open `out` for this run: items already committed (0 when fresh), or None when it is complete.

    A fresh folder gets its meta.json (identity, versions, complete false) at once.
    """
    meta = open_run_dir(out, identity, output_names, overwrite)
    if meta is None:
        files.atomic_write_json(out / META_FILE, {**identity, "versions": versions(), "complete": False})
        return 0
    if meta.get("complete"):
        release_lock(out)
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
    """Mark the run complete (meta.json rewritten atomically), drop its progress file and release its lock."""
    files.atomic_write_json(out / META_FILE, {**identity, **extra, "versions": versions(), "complete": True})
    (out / PROGRESS_FILE).unlink(missing_ok=True)
    release_lock(out)


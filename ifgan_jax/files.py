"""Files: atomic writes, streaming .npy memmaps, a PNG writer pool that overlaps encoding with compute, hashing."""

from __future__ import annotations

import concurrent.futures
import errno
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ifgan_jax.errors import InputError

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once at import (os.umask can only be read by setting it)
FILE_MODE = 0o666 & ~_UMASK  # what open() would create
TEMP_MARK = ".ifgan-tmp"  # in the name of every temporary an atomic write makes (a kill -9 can leave one)
PNG_COMPRESS_LEVEL = 1  # fast encoding; still lossless and byte-for-byte deterministic


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to a temp file beside `path`, then rename it over `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_MARK, dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp makes 0600; outputs on shared storage follow the umask like open()
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """JSON with sorted keys, written atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """`np.save` to a temp file, then rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_MARK + ".npy", dir=path.parent)
    os.fchmod(fd, FILE_MODE)
    os.close(fd)
    try:
        np.save(tmp, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def open_npy(path: str | os.PathLike, shape: tuple[int, ...], dtype: Any, *, resume: bool) -> np.memmap:
    """A writable .npy memmap of `shape`; reopened as-is when resuming and the header matches."""
    path = Path(path)
    if resume and path.is_file():
        try:
            existing = np.load(path, mmap_mode="r+")
            if existing.shape == tuple(shape) and existing.dtype == np.dtype(dtype):
                _reserve(path)
                return existing
        except (ValueError, OSError):
            pass  # damaged header: start the file again
    memmap = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=tuple(shape))
    _reserve(path)
    return memmap


def _reserve(path: Path) -> None:
    """Allocate the whole (sparse) file now: a memmap page written later on a full disk kills the process with
    SIGBUS, while this fails at once with ENOSPC, an OSError the CLI reports in one line."""
    with open(path, "r+b") as fh:
        try:
            os.posix_fallocate(fh.fileno(), 0, os.fstat(fh.fileno()).st_size)
        except OSError as err:
            if err.errno in (errno.EOPNOTSUPP, errno.EINVAL):
                return  # a filesystem without fallocate: nothing to reserve with
            raise OSError(err.errno, err.strerror, str(path)) from None


def encode_png(image: np.ndarray) -> bytes:
    """Deterministic RGB PNG bytes of a (H, W, 3) uint8 image."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image), mode="RGB").save(buf, format="PNG",
                                                                   compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


class PngWriter:
    """Encode and write PNGs on a small thread pool (Pillow releases the GIL while compressing)."""

    def __init__(self, workers: int = 2):
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers))

    def submit(self, paths: list[Path], images: np.ndarray) -> concurrent.futures.Future:
        """Write images[i] to paths[i] atomically; the future completes when all are on disk."""
        return self._pool.submit(self._write_all, list(paths), images)

    @staticmethod
    def _write_all(paths: list[Path], images: np.ndarray) -> None:
        for path, image in zip(paths, images, strict=True):
            atomic_write_bytes(path, encode_png(image))

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __enter__(self) -> PngWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def save_grid(path: str | os.PathLike, images: np.ndarray, *, pad: int = 2) -> None:
    """Write a (rows, cols, H, W, 3) uint8 array as one PNG grid, atomically."""
    rows, cols, h, w, c = images.shape
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
    for r in range(rows):
        for k in range(cols):
            y, x = pad + r * (h + pad), pad + k * (w + pad)
            grid[y : y + h, x : x + w] = images[r, k]
    atomic_write_bytes(path, encode_png(grid))


def remove_outputs(out: Path, names: Iterable[str]) -> None:
    """Delete a job's outputs under `out`: files, folders, and glob patterns such as "images/[0-9]*.png".

    A folder named by a pattern too (e.g. "images" with "images/??????.png") loses only the matching files
    and goes only when that leaves it empty, so files a user put there survive --overwrite; a folder with no
    pattern is the job's own scratch and is removed whole.
    """
    names = list(names)
    patterns = [n for n in names if any(c in n for c in "*?[")]
    for pattern in patterns:
        for path in out.glob(pattern):
            if path.is_file():
                path.unlink()
    patterned = {p.split("/", 1)[0] for p in patterns}
    for name in names:
        target = out / name
        if name in patterns:
            continue
        if target.is_dir():
            if name not in patterned:
                shutil.rmtree(target)
            elif not any(target.iterdir()):
                target.rmdir()
        else:
            target.unlink(missing_ok=True)


def remove_temporaries(folder: Path) -> int:
    """Delete what killed atomic writes left under `folder` (their names carry TEMP_MARK); returns how many."""
    stale = [p for p in folder.rglob(f".*{TEMP_MARK}*") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def read_json(path: Path) -> Any:
    """The parsed JSON file, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def load_npy(path: str | os.PathLike, what: str) -> np.ndarray:
    """`np.load` without pickles; a missing or unreadable file is an InputError naming `what` and the path."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file {path} does not exist")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise InputError(f"cannot read {what} file {path}: {err}") from None

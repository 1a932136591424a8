"""Files: atomic writes, streaming .npy memmaps, a PNG writer pool that overlaps encoding with compute, hashing."""

from __future__ import annotations

import concurrent.futures
import errno
import hashlib
import io
import json
import math
import mmap
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
NAME_MAX_BYTES = 255  # the longest file name Linux filesystems (ext4, xfs, btrfs, tmpfs, NFS) accept
# An atomic write's temporary is ".{name}.{8 random}{TEMP_MARK}.npy": its name is this much longer than the target's.
TEMP_NAME_EXTRA = len(".") + len(".") + 8 + len(TEMP_MARK) + len(".npy")
PNG_COMPRESS_LEVEL = 1  # fast encoding; still lossless and byte-for-byte deterministic


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to a temp file beside `path`, then rename it over `path`."""
    path = Path(path)
    fd, tmp = _mkstemp(path, TEMP_MARK)
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp makes 0600; outputs on shared storage follow the umask like open()
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _mkstemp(path: Path, suffix: str) -> tuple[int, str]:
    """A temporary beside `path`; a folder that refuses it (read-only, full) is named in the error, not the
    temporary's random name."""
    try:
        return tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(path)) from None


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """JSON with sorted keys, written atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """`np.save` to a temp file, then rename."""
    path = Path(path)
    fd, tmp = _mkstemp(path, TEMP_MARK + ".npy")
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


def flush_npy(array: np.memmap) -> None:
    """Write a memmap's dirty pages to its file, then drop its pages from this process: they stay in the
    page cache and the file, but no longer count in the RSS, which would otherwise grow by every page a long
    run writes (the kernel reclaims them only under memory pressure)."""
    array.flush()
    mapping = getattr(array, "_mmap", None)
    if mapping is not None and hasattr(mmap, "MADV_DONTNEED"):
        mapping.madvise(mmap.MADV_DONTNEED)


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


def output_path(value: str | os.PathLike, flag: str) -> Path:
    """An output path from the command line; an empty string is refused (it is not the current folder)."""
    if isinstance(value, str) and not value.strip():
        raise InputError(f"{flag} must name a path, got an empty string")
    return Path(value)


def check_file_name(name: str, what: str, suffix: str = "") -> str:
    """`name` + `suffix` as one file name that an atomic write can create: no separator, NUL or control
    character, not hidden, and short enough that its temporary fits NAME_MAX (checked before anything is
    written). Returns `name`."""
    if not name or name in (".", "..") or name.startswith(".") or "/" in name or "\\" in name \
            or not name.isprintable():
        raise InputError(f"{what} {name[:80]!r} cannot be used in a file name")
    size = len(os.fsencode(name + suffix))
    if size + TEMP_NAME_EXTRA > NAME_MAX_BYTES:
        raise InputError(f"{what} {name[:24]!r}... makes a file name of {size} bytes; at most "
                         f"{NAME_MAX_BYTES - TEMP_NAME_EXTRA} bytes fit")
    return name


def _existing_ancestor(path: Path) -> Path:
    probe = Path(os.path.abspath(path))
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def check_writable(folder: str | os.PathLike, what: str) -> None:
    """InputError unless `folder` exists writable or can be created: checked on its nearest existing ancestor,
    creating nothing, so a refused run leaves nothing behind (os.access sees read-only mounts even for root)."""
    probe = _existing_ancestor(Path(folder))
    if not probe.is_dir():
        raise InputError(f"{what} {folder}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        reason = "read-only file system" if os.statvfs(probe).f_flag & os.ST_RDONLY else "permission denied"
        raise InputError(f"cannot write to {what} {folder}: {reason} ({probe})")


def require_space(folder: str | os.PathLike, needed: int, what: str) -> None:
    """InputError when the filesystem that holds (or will hold) `folder` has fewer than `needed` bytes free."""
    free = shutil.disk_usage(_existing_ancestor(Path(folder))).free
    if needed > free:
        raise InputError(f"No space left on device for {what}: {_size(needed)} needed, {_size(free)} free at {folder}")


def _size(n: float) -> str:
    if n < 1024:
        return f"{n:,.0f} bytes"
    exponent = min(3, int(math.log(n, 1024)))
    return f"{n / 1024**exponent:,.1f} {('KiB', 'MiB', 'GiB')[exponent - 1]}"


def allocated_bytes(path: Path) -> int:
    """Bytes already allocated to `path` on disk (0 when missing): what a resumed run need not find free again."""
    try:
        return path.stat().st_blocks * 512
    except OSError:
        return 0


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


def load_npy(path: str | os.PathLike, what: str, *, mmap: bool = False) -> np.ndarray:
    """`np.load` without pickles (memory-mapped read-only with `mmap`, for inputs larger than memory); a
    missing or unreadable file is an InputError naming `what` and the path."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file {path} does not exist")
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (ValueError, OSError, EOFError) as err:
        raise InputError(f"cannot read {what} file {path}: {err}") from None

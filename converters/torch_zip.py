"""The zip container of ``torch.save`` files (torch >= 1.6): locating the archive's folder and reading its members
within a budget on the bytes they expand to in all.

torch never compresses members, but a re-packed archive may deflate them, and a zip directory may list the
same data under many names. Each member's declared size is checked against the remaining budget before a byte
is inflated, and the inflated bytes are counted as they arrive, so a 2 MB archive cannot make the reader
allocate gigabytes (one member near deflate's ratio limit, or many of them).
"""

from __future__ import annotations

import zipfile

from ifgan_jax.errors import CheckpointError

__all__ = ["EXPANSION_ALLOWANCE", "MAX_DEFLATE_RATIO", "MemberReader", "expansion_budget", "find_top"]

# Deflate cannot expand data by more than ~1032x, so a member claiming more than that is lying about its size.
MAX_DEFLATE_RATIO = 1032
# What the members of one archive may expand to beyond twice its size: the same allowance the tensors built from
# them get (torch_checkpoint's output budget), room for well-compressing buffers (zeros) in re-packed files.
EXPANSION_ALLOWANCE = 256 << 20
READ_CHUNK = 1 << 20  # inflate in pieces this large, counting each


def expansion_budget(archive_size: int) -> int:
    """The most bytes all members read from an archive of `archive_size` bytes may expand to."""
    return 2 * archive_size + EXPANSION_ALLOWANCE


def _shown(name: str) -> str:
    return repr(name if len(name) <= 100 else name[:97] + "...")


def find_top(zf: zipfile.ZipFile) -> str:
    """The folder holding `data.pkl` (whatever name the writer chose)."""
    tops = {n[: -len("/data.pkl")] for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1}
    if not tops:
        raise CheckpointError("zip archive has no <folder>/data.pkl entry; it was not written by torch.save")
    if len(tops) > 1:
        raise CheckpointError(f"zip archive has several data.pkl folders: {_shown(str(sorted(tops)))}")
    return tops.pop()


class MemberReader:
    """Reads members of one archive, refusing any that would take the total expanded bytes past `budget`."""

    def __init__(self, zf: zipfile.ZipFile, archive_size: int, budget: int | None = None) -> None:
        self._zf = zf
        self._archive_size = archive_size
        self.budget = expansion_budget(archive_size) if budget is None else budget

    def read(self, name: str, what: str) -> bytearray:
        """The member's bytes; CheckpointError for a missing, encrypted, implausible or over-budget member."""
        try:
            info = self._zf.getinfo(name)
        except KeyError:
            raise CheckpointError(f"{what} {_shown(name)} is missing from the archive") from None
        if info.flag_bits & 0x1:
            raise CheckpointError(f"{what} {_shown(name)} is encrypted")
        if info.compress_size > self._archive_size:
            raise CheckpointError(f"{what} {_shown(name)} claims more bytes than the archive holds")
        if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
            raise CheckpointError(f"{what} {_shown(name)} has inconsistent sizes in the zip directory")
        if info.file_size > MAX_DEFLATE_RATIO * info.compress_size + 4096:
            raise CheckpointError(f"{what} {_shown(name)} claims an implausible uncompressed size")
        if info.file_size > self.budget:
            raise CheckpointError(f"{what} {_shown(name)} would expand to {info.file_size} bytes, past what an "
                                  f"archive of {self._archive_size} bytes may hold in all; refused before inflating")
        self.budget -= info.file_size
        data = bytearray(info.file_size)
        view = memoryview(data)
        got = 0
        with self._zf.open(info) as fh:
            while got < info.file_size:
                n = fh.readinto(view[got : got + READ_CHUNK])
                if not n:
                    break
                got += n
            if got != info.file_size or fh.read(1):  # the directory's size is what was budgeted: hold it to it
                raise CheckpointError(f"{what} {_shown(name)} does not expand to its declared {info.file_size} bytes")
        return data

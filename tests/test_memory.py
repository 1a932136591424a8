"""Long runs keep a bounded RSS: flushed .npy memmaps leave the process's resident pages."""

from __future__ import annotations

import numpy as np

from ifgan_jax import files


def _resident_kb(path) -> int:
    """Rss (kB) of this process's mappings of `path`, from /proc/self/smaps."""
    total, inside = 0, False
    with open("/proc/self/smaps") as fh:
        for line in fh:
            head = line.split()
            if head and "-" in head[0] and len(head) >= 5:  # a mapping's first line
                inside = len(head) >= 6 and head[-1] == str(path)
            elif inside and line.startswith("Rss:"):
                total += int(head[1])
    return total


def test_flushed_npy_pages_leave_the_rss(tmp_path):
    path = tmp_path / "z.npy"
    array = files.open_npy(path, (64, 1 << 16), np.float32, resume=False)  # 16 MiB
    array[:] = 1.0
    assert _resident_kb(path) > 8 * 1024  # written pages are resident while mapped
    files.flush_npy(array)
    assert _resident_kb(path) < 256
    assert np.load(path, mmap_mode="r")[-1, -1] == 1.0  # the data is in the file
    array[0, :10] = 2.0  # and the mapping still works after the release
    files.flush_npy(array)
    assert np.load(path)[0, 9] == 2.0


def test_score_reads_codes_memory_mapped_and_checks_them_in_chunks(tmp_path, monkeypatch):
    import pytest

    from ifgan_jax.errors import InputError
    from ifgan_jax.jobs import score

    codes = np.random.default_rng(0).standard_normal((8, 100)).astype(np.float32)
    codes[5, 3] = np.nan
    np.save(tmp_path / "codes.npy", codes)
    loads = []
    real_load = files.load_npy
    monkeypatch.setattr(files, "load_npy", lambda *a, **k: loads.append(k) or real_load(*a, **k))
    monkeypatch.setattr(score, "CHECK_ROWS", 4)
    with pytest.raises(InputError, match=r"rows from 4\): 1 of 4 codes contain NaN"):
        score.run(str(tmp_path / "out"), source=str(tmp_path / "codes.npy"), predictor="brightness",
                  show_progress=False)
    assert loads == [{"mmap": True}] and not (tmp_path / "out").exists()

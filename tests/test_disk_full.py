"""A full disk ends a job with one line and exit 2 (it was SIGBUS from a memmap, or a traceback), and the same
command resumes to a clean run's bytes once there is space. Needs root to mount a small tmpfs."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import needs_dcgan, run_cli

pytestmark = needs_dcgan


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs, and a function that grows it (tmpfs resizes in place)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = Path("/tmp") / f"ifgan-full-{uuid.uuid4().hex[:8]}"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode:
        mount.rmdir()
        pytest.skip("this machine does not allow mounting a tmpfs")

    def grow() -> None:
        subprocess.run(["mount", "-o", "remount,size=64m", str(mount)], check=True)

    yield mount, grow
    subprocess.run(["umount", str(mount)], check=False)
    mount.rmdir()


@pytest.mark.parametrize("images", ["png", "npy"])
def test_disk_full_is_one_line_then_resumes_identically(tmp_path, small_disk, images):
    mount, grow = small_disk
    args = ["sample", "-n", "600", "--seed", "4", "--batch-size", "32", "--images", images, "--quiet"]
    res = run_cli(*args, "-o", str(mount / "run"))
    assert res.returncode == 2, res.stderr[-2000:]
    assert res.stderr.count("\n") == 1 and "No space left on device" in res.stderr, res.stderr[-2000:]
    grow()
    assert run_cli(*args, "-o", str(mount / "run")).returncode == 0
    assert run_cli(*args, "-o", str(tmp_path / "clean")).returncode == 0
    clean = sorted(p.relative_to(tmp_path / "clean") for p in (tmp_path / "clean").rglob("*") if p.is_file())
    resumed = sorted(p.relative_to(mount / "run") for p in (mount / "run").rglob("*") if p.is_file())
    assert resumed == clean
    for name in clean:
        assert (mount / "run" / name).read_bytes() == (tmp_path / "clean" / name).read_bytes(), name

"""One writer per output folder (jobs/rundir.py): a second process is refused in one line naming the holder's pid,
and a holder killed with SIGKILL leaves nothing stuck (the kernel drops its flock)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, needs_dcgan

from ifgan_jax.cli import main
from ifgan_jax.errors import InputError
from ifgan_jax.jobs import multiprocess, rundir

HOLD = """
import sys, time
from pathlib import Path
from ifgan_jax.jobs import rundir
rundir.acquire_lock(Path(sys.argv[1]))
print("locked", flush=True)
time.sleep(600)
"""


def _hold(folder: Path) -> subprocess.Popen:
    """A process that takes `folder`'s writer lock and keeps it until killed."""
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "locked"
    return proc


@needs_dcgan
def test_second_writer_is_refused_until_the_holder_is_killed(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["sample", "-n", "8", "--images", "none", "--batch-size", "8", "-o", str(out), "--quiet"]
    holder = _hold(out)
    try:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(out) in err and f"pid {holder.pid}" in err, err
        assert not (out / "z.npy").exists() and not (out / rundir.META_FILE).exists()
    finally:
        holder.kill()  # SIGKILL: no cleanup runs in the holder
        holder.wait()
    assert (out / rundir.LOCK_FILE).exists()  # the dead holder's file stays; its lock does not
    assert main(argv) == 0
    assert json.loads((out / rundir.META_FILE).read_text())["complete"]
    assert np.load(out / "z.npy").shape == (8, 100)
    assert not (out / rundir.LOCK_FILE).exists()  # a finished run ends with a clean run's files


def test_lock_is_reentrant_and_released_when_the_run_finishes(tmp_path):
    out = tmp_path / "run"
    identity = {"job": "test", "count": 3}
    assert rundir.start_run(out, identity, [], False) == 0
    assert rundir.open_run_dir(out, identity, [], False) is not None  # the same process may reopen its folder
    holder_text = (out / rundir.LOCK_FILE).read_text().split()
    assert holder_text[0] == str(os.getpid())
    rundir.finish_run(out, identity)
    assert not (out / rundir.LOCK_FILE).exists()
    assert rundir.start_run(out, identity, [], False) is None  # complete: nothing to do, nothing held
    assert not (out / rundir.LOCK_FILE).exists()


def test_a_refused_open_leaves_the_folder_as_it_was(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        rundir.open_run_dir(out, {"job": "test"}, [], False)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_stale_lock_file_without_a_holder_does_not_block(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / rundir.LOCK_FILE).write_text("999999999 elsewhere\n")  # left by a process that died
    identity = {"job": "test"}
    assert rundir.start_run(out, identity, [], False) == 0  # a stale lock file is not "unrelated files" either
    rundir.finish_run(out, identity)


def test_process_parts_lock_separately(tmp_path):
    """The documented multi-process mode: each process writes (and locks) its own part folder."""
    out = tmp_path / "run"
    holder = _hold(multiprocess.part_dir(out, 0))
    try:
        part1 = multiprocess.part_dir(out, 1)
        assert rundir.start_run(part1, {"job": "test", "part": 1}, [], False) == 0
        rundir.finish_run(part1, {"job": "test", "part": 1})
        with pytest.raises(InputError, match=f"pid {holder.pid}"):
            rundir.start_run(multiprocess.part_dir(out, 0), {"job": "test", "part": 0}, [], False)
        assert not (out / rundir.LOCK_FILE).exists()  # the shared folder itself: the merge has its own lock
    finally:
        holder.kill()
        holder.wait()

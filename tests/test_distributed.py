"""Multi-process sample and invert: 2 local processes (jax.distributed, independent) merge to one run's bytes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, needs_dcgan, run_cli

from ifgan_jax.jobs.multiprocess import share

pytestmark = needs_dcgan

N, BATCH, SEED = 20, 4, 5
COMMON = ("sample", "-n", str(N), "--seed", str(SEED), "--batch-size", str(BATCH), "--score", "stats", "--quiet")
TIMEOUT_S = 60


def tree(directory):
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "run"
    res = run_cli(*COMMON, "-o", str(out))
    assert res.returncode == 0, res.stderr
    return out


def assert_same_run(merged, single):
    assert tree(merged) == tree(single)  # no leftover parts, same PNG names
    for name in ("z.npy", "scores.npy", "attributes.json", "meta.json"):
        assert (merged / name).read_bytes() == (single / name).read_bytes(), name
    # Shares start on batch boundaries, so every batch is the one a single run computes: same bytes.
    for png in sorted((single / "images").iterdir()):
        assert (merged / "images" / png.name).read_bytes() == png.read_bytes(), png.name


def start_processes(out, extra, logs, command=COMMON):
    # Output goes to files: a full pipe would block a process that nobody reads while we poll.
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    procs = []
    for i in range(2):
        stdout, stderr = (open(logs / f"p{i}.{kind}", "w+") for kind in ("out", "err"))
        procs.append((subprocess.Popen([sys.executable, str(ROOT / "run.py"), *command, "-o", str(out),
                                        "--num-processes", "2", "--process-id", str(i), *extra],
                                       stdout=stdout, stderr=stderr, text=True, env=env, cwd=ROOT), stdout, stderr))
    return procs


def wait_all(started):
    """(returncode, stdout, stderr) per process; once one fails the others get 5 s, as a peer would hang."""
    procs = [p for p, _, _ in started]
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            # A crashed process may not exit (jax's shutdown waits for its peers): watch for its traceback too.
            crashed = any("Traceback" in Path(fh.name).read_text() for _, _, fh in started)
            if crashed or any(p.poll() not in (None, 0) for p in procs):
                deadline = min(deadline, time.monotonic() + 5)
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    outputs = []
    for p, stdout, stderr in started:
        p.wait()
        texts = []
        for fh in (stdout, stderr):
            fh.seek(0)
            texts.append(fh.read())
            fh.close()
        outputs.append((p.returncode, *texts))
    return outputs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_share_covers_in_whole_batches():
    for count, procs, batch in [(20, 2, 4), (21, 3, 4), (3, 4, 1), (1000, 7, 64), (5, 2, 64)]:
        spans = [share(count, procs, i, batch) for i in range(procs)]
        assert spans[0][0] == 0 and spans[-1][1] == count
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
        assert all(start % batch == 0 for start, stop in spans if stop > start)


def test_jax_distributed_two_processes(single_run, tmp_path):
    out = tmp_path / "dist"
    results = wait_all(start_processes(out, ["--coordinator", f"127.0.0.1:{free_port()}"], tmp_path))
    stderr = "\n".join(err for _, _, err in results)
    assert [rc for rc, _, _ in results] == [0, 0], stderr[-3000:]
    assert "merged" in results[0][1]
    assert_same_run(out, single_run)


def test_independent_processes(single_run, tmp_path):
    out = tmp_path / "indep"
    results = wait_all(start_processes(out, [], tmp_path))
    assert [rc for rc, _, _ in results] == [0, 0], "\n".join(err for _, _, err in results)[-3000:]
    assert sum("merged" in out_text for _, out_text, _ in results) == 1  # exactly one process merged
    assert_same_run(out, single_run)
    # Running it again finds the merged run complete and leaves it alone.
    res = run_cli(*COMMON, "-o", str(out), "--num-processes", "2", "--process-id", "1")
    assert res.returncode == 0 and "already complete" in res.stdout
    # Another seed is another run: refused in one line (it used to say "already complete", keeping old data).
    other = [arg if arg != str(SEED) else str(SEED + 1) for arg in COMMON]
    res = run_cli(*other, "-o", str(out), "--num-processes", "2", "--process-id", "0")
    assert res.returncode == 2 and "different run" in res.stderr and "seed" in res.stderr
    assert_same_run(out, single_run)


@pytest.mark.parametrize("flags", [["--process-id", "0"], ["--num-processes", "2", "--process-id", "2"],
                                   ["--coordinator", "nohostport", "--num-processes", "2", "--process-id", "0"],
                                   ["--coordinator", "notahost:99999", "--num-processes", "2", "--process-id", "0"],
                                   ["--coordinator", "nosuchhost.invalid:4000", "--num-processes", "2",
                                    "--process-id", "1"],
                                   ["--coordinator", "127.0.0.1:PORT", "--num-processes", "2", "--process-id", "1",
                                    "--coordinator-timeout", "1"]])
def test_bad_flags(tmp_path, flags):
    """One line and exit 2, at once: a bad or silent coordinator used to hang 5 minutes, then abort in C++."""
    flags = [f.replace("PORT", str(free_port())) for f in flags]
    start = time.monotonic()
    res = run_cli(*COMMON, "-o", str(tmp_path / "x"), *flags)
    assert time.monotonic() - start < 60
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "error" in res.stderr


# --- invert: the same sharing, over whole batches of images ------------------------------------------------
INVERT_IMAGES, INVERT_BATCH = 5, 2


def invert_command(images):
    return ("invert", "-i", str(images), "--steps", "4", "--init", "best-of-8", "--batch-size", str(INVERT_BATCH),
            "--quiet")


@pytest.fixture(scope="module")
def invert_single(tmp_path_factory):
    root = tmp_path_factory.mktemp("invert")
    images = root / "targets.npy"
    np.save(images, np.random.default_rng(3).integers(0, 256, (INVERT_IMAGES, 64, 64, 3), dtype=np.uint8))
    out = root / "single"
    res = run_cli(*invert_command(images), "-o", str(out))
    assert res.returncode == 0, res.stderr
    return images, out


def assert_same_inversion(merged, single):
    assert tree(merged) == tree(single)  # no parts, batches or progress file left
    for path in sorted(p for p in single.rglob("*") if p.is_file()):
        assert (merged / path.relative_to(single)).read_bytes() == path.read_bytes(), path.name


def test_invert_jax_distributed_two_processes(invert_single, tmp_path):
    images, single = invert_single
    out = tmp_path / "dist"
    results = wait_all(start_processes(out, ["--coordinator", f"127.0.0.1:{free_port()}"], tmp_path,
                                       invert_command(images)))
    assert [rc for rc, _, _ in results] == [0, 0], "\n".join(err for _, _, err in results)[-3000:]
    assert "merged all 5" in results[0][1] and "images 0..2" in results[0][1] and "images 2..5" in results[1][1]
    assert_same_inversion(out, single)


def test_invert_independent_processes_one_after_the_other(invert_single, tmp_path):
    # Process 1 first: it finds part 0 missing and leaves the merge; process 0 then completes and merges.
    images, single = invert_single
    out = tmp_path / "indep"
    command = (*invert_command(images), "-o", str(out), "--num-processes", "2")
    res = run_cli(*command, "--process-id", "1")
    assert res.returncode == 0 and "merged" not in res.stdout, res.stderr
    assert (out / ".parts" / "00001" / "meta.json").is_file() and not (out / "codes.npy").exists()
    res = run_cli(*command, "--process-id", "0")
    assert res.returncode == 0 and "merged all 5" in res.stdout, res.stderr
    assert_same_inversion(out, single)
    res = run_cli(*command, "--process-id", "1")  # the merged run is complete: nothing to do
    assert res.returncode == 0 and "already complete" in res.stdout
    res = run_cli(*command, "--process-id", "1", "--steps", "5")  # another run in the same directory
    assert res.returncode == 2 and "different run" in res.stderr

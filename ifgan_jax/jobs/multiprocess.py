"""Sharing one job among P processes: each writes a contiguous share of whole batches, then one merges.

Two ways to run P processes (the same command on every host, `--process-id` differing):

- JAX's distributed runtime (`--coordinator HOST:PORT`, or `auto` for the cluster environment that
  `jax.distributed.initialize` detects: SLURM, Open MPI, Kubernetes, TPU pods): after every process has
  written its part, a global barrier; process 0 merges, and a second barrier ends the job for everyone.
- Independent processes (`--num-processes P --process-id I`, no coordinator): no runtime at all; the
  process that finds every part complete merges (an exclusive lock file makes that exactly one).

Parts live in `OUT/.parts/NNNNN/`, each a normal resumable run directory. The merge needs them on one
filesystem (shared storage across hosts, or copied there). Shares start on multiples of the batch size, so
every batch holds the same items as in a single run and a merged folder has a single run's bytes.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
from jax.experimental import multihost_utils

from ifgan_jax import files
from ifgan_jax.errors import InputError
from ifgan_jax.jobs.rundir import META_FILE

PARTS_DIR = ".parts"
LOCK_NAME = ".merge.lock"
CONNECT_TIMEOUT_S = 60.0  # how long a process waits for the coordinator to accept (jax's own default is 300)
CONNECT_RETRY_S = 0.5


@dataclasses.dataclass(frozen=True)
class ProcessInfo:
    """Who this process is among `num_processes`, and whether JAX's runtime connects them."""

    process_id: int
    num_processes: int
    runtime: bool  # True: jax.distributed is initialized (barriers available)


def initialize(coordinator: str | None, num_processes: int | None, process_id: int | None,
               timeout: float = CONNECT_TIMEOUT_S) -> ProcessInfo:
    """Start jax.distributed when a coordinator is given ('auto': cluster detection); else independent mode.

    Must run before any JAX computation in the process (jax fixes its devices at the first one). An address
    that does not resolve, or a coordinator that does not answer within `timeout` seconds, is one InputError
    (jax's own timeout ends the process with a C++ abort, so it is checked here first).
    """
    if coordinator is None:
        if num_processes is None and process_id is None:
            return ProcessInfo(0, 1, False)
        if num_processes is None or process_id is None:
            raise InputError("give both --num-processes and --process-id (or --coordinator)")
        _check_ids(num_processes, process_id)
        return ProcessInfo(process_id, num_processes, False)
    if num_processes is not None and process_id is not None:
        _check_ids(num_processes, process_id)
    if not timeout > 0:
        raise InputError(f"--coordinator-timeout must be > 0 seconds, got {timeout}")
    address = None if coordinator == "auto" else coordinator
    if address is not None:
        _check_coordinator(address, process_id, timeout)
    try:
        jax.distributed.initialize(coordinator_address=address, num_processes=num_processes, process_id=process_id,
                                   initialization_timeout=max(1, int(timeout)))
    except (RuntimeError, ValueError) as err:
        raise InputError(f"cannot start jax.distributed ({coordinator}): {' '.join(str(err).split())[:300]}") from None
    return ProcessInfo(jax.process_index(), jax.process_count(), True)


def _check_coordinator(address: str, process_id: int | None, timeout: float) -> None:
    """HOST:PORT must parse and resolve; a process other than 0 waits until the coordinator accepts."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"--coordinator must be HOST:PORT (port 1-65535) or auto, got {address!r}")
    try:
        socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
    except OSError as err:
        raise InputError(f"--coordinator host {host!r} does not resolve: {err.strerror or err}") from None
    if process_id == 0:
        return  # process 0 runs the coordinator service itself
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=min(5.0, timeout)):
                return
        except OSError as err:
            if time.monotonic() >= deadline:
                raise InputError(f"no coordinator answered at {address} within {timeout:g} s ({err.strerror or err});"
                                 " is process 0 running? (--coordinator-timeout sets the wait)") from None
            time.sleep(CONNECT_RETRY_S)


def _check_ids(num_processes: int, process_id: int) -> None:
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise InputError(f"need 0 <= --process-id < --num-processes, got {process_id} and {num_processes}")


def share(count: int, num_processes: int, process_id: int, batch_size: int = 1) -> tuple[int, int]:
    """Item indices [start, stop) of one process: contiguous, balanced in whole batches of `batch_size`."""
    batches = -(-count // batch_size)
    first = process_id * batches // num_processes
    last = (process_id + 1) * batches // num_processes
    return min(count, first * batch_size), min(count, last * batch_size)


def shares(count: int, num_processes: int, batch_size: int) -> list[tuple[int, int]]:
    """Every process's share, in process order."""
    return [share(count, num_processes, i, batch_size) for i in range(num_processes)]


def part_dir(out_dir: str | Path, process_id: int) -> Path:
    """Where process `process_id` writes its share."""
    return Path(out_dir) / PARTS_DIR / f"{process_id:05d}"


def barrier(info: ProcessInfo, name: str) -> None:
    """Wait for every process (a no-op without the runtime)."""
    if info.runtime and info.num_processes > 1:
        multihost_utils.sync_global_devices(name)


def parts_complete(out: Path, count: int, num_processes: int, batch_size: int) -> bool:
    """True when every non-empty share's part directory is marked complete."""
    for i, (start, stop) in enumerate(shares(count, num_processes, batch_size)):
        if stop > start and not (files.read_json(part_dir(out, i) / META_FILE) or {}).get("complete"):
            return False
    return True


def merged_complete(out: Path, identity: dict[str, Any]) -> bool:
    """True when `out` holds the merged, complete run of `identity` (and no parts are left)."""
    meta = files.read_json(out / META_FILE) or {}
    same = all(meta.get(k) == v for k, v in identity.items())
    return bool(meta.get("complete") and same and not (out / PARTS_DIR).exists())


def take_merge_lock(out: Path) -> bool:
    """True for exactly one caller per OUT/.parts: the one that creates the lock file."""
    try:
        fd = os.open(out / PARTS_DIR / LOCK_NAME, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True


@dataclasses.dataclass
class SharedRun:
    """What one process did: its share, its part's result, and the merge's result when it merged."""

    share: tuple[int, int]
    part: Any = None
    merged: Any = None
    did_merge: bool = False


def run_shared(out: Path, info: ProcessInfo, *, job: str, count: int, batch_size: int,
               write_part: Callable[[Path, int, int], Any], merge: Callable[[], Any]) -> SharedRun:
    """Write this process's share with `write_part(part_dir, start, stop)`, then merge exactly once.

    With the runtime, process 0 merges between two barriers (named after `job`); without it, the process
    that finds every part complete and takes the lock merges.
    """
    start, stop = share(count, info.num_processes, info.process_id, batch_size)
    result = SharedRun((start, stop))
    if stop > start:
        result.part = write_part(part_dir(out, info.process_id), start, stop)
    if info.runtime:
        barrier(info, f"ifgan_{job}_parts_written")
        if info.process_id == 0:
            result.merged, result.did_merge = merge(), True
        barrier(info, f"ifgan_{job}_merged")
    elif parts_complete(out, count, info.num_processes, batch_size) and take_merge_lock(out):
        result.merged, result.did_merge = merge(), True
    return result

"""Multi-process sampling: each process writes its contiguous share of sample indices, then one merges.

Two ways to run P processes (same command on every host, `--process-id` differing):

- JAX's distributed runtime (`--coordinator HOST:PORT`, or `auto` for the cluster environment that
  `jax.distributed.initialize` detects: SLURM, Open MPI, Kubernetes, TPU pods): after every process has
  written its part, a global barrier; process 0 merges, and a second barrier ends the job for everyone.
- Independent processes (`--num-processes P --process-id I`, no coordinator): no runtime at all; the
  process that finds every part complete merges (an exclusive lock file makes that exactly one).

Parts live in `OUT/.parts/NNNNN/` (each a normal, resumable `run_sampling` directory). The merge needs
them on one filesystem (shared storage across hosts, or copied there), and produces exactly what a
single-process run writes: the same file names and, because shares start on multiples of the batch size
so every batch holds the same indices as in a single run, the same bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ifgan_jax import files
from ifgan_jax.errors import InputError

PARTS_DIR = ".parts"
LOCK_NAME = ".merge.lock"
ARRAY_FILES = ("z.npy", "w.npy", "wp.npy", "images.npy", "scores.npy")


@dataclasses.dataclass(frozen=True)
class ProcessInfo:
    """Who this process is among `num_processes`, and whether JAX's runtime connects them."""

    process_id: int
    num_processes: int
    runtime: bool  # True: jax.distributed is initialized (barriers available)


def initialize(coordinator: str | None, num_processes: int | None, process_id: int | None) -> ProcessInfo:
    """Start jax.distributed when a coordinator is given ('auto': cluster detection); else independent mode.

    Must run before any JAX computation in the process (jax fixes its devices at the first one).
    """
    if coordinator is None:
        if num_processes is None and process_id is None:
            return ProcessInfo(0, 1, False)
        if num_processes is None or process_id is None:
            raise InputError("give both --num-processes and --process-id (or --coordinator)")
        _check_ids(num_processes, process_id)
        return ProcessInfo(process_id, num_processes, False)
    import jax

    if num_processes is not None and process_id is not None:
        _check_ids(num_processes, process_id)
    address = None if coordinator == "auto" else coordinator
    if address is not None and (":" not in address or not address.rsplit(":", 1)[1].isdigit()):
        raise InputError(f"--coordinator must be HOST:PORT or auto, got {coordinator!r}")
    try:
        jax.distributed.initialize(coordinator_address=address, num_processes=num_processes, process_id=process_id)
    except (RuntimeError, ValueError) as err:
        raise InputError(f"cannot start jax.distributed ({coordinator}): {' '.join(str(err).split())[:300]}") from None
    return ProcessInfo(jax.process_index(), jax.process_count(), True)


def _check_ids(num_processes: int, process_id: int) -> None:
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise InputError(f"need 0 <= --process-id < --num-processes, got {process_id} and {num_processes}")


def share(count: int, num_processes: int, process_id: int, batch_size: int = 1) -> tuple[int, int]:
    """Sample indices [start, stop) of one process: contiguous, balanced in whole batches of `batch_size`."""
    batches = -(-count // batch_size)
    first = process_id * batches // num_processes
    last = (process_id + 1) * batches // num_processes
    return min(count, first * batch_size), min(count, last * batch_size)


def part_dir(out_dir: str | Path, process_id: int) -> Path:
    """Where process `process_id` writes its share."""
    return Path(out_dir) / PARTS_DIR / f"{process_id:05d}"


def barrier(info: ProcessInfo, name: str) -> None:
    """Wait for every process (a no-op without the runtime)."""
    if info.runtime and info.num_processes > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def run_distributed_sampling(G: Any, out_dir: str | Path, info: ProcessInfo, *, count: int | None,
                             batch_size: int = 64, codes: np.ndarray | None = None, overwrite: bool = False,
                             **kwargs: Any) -> dict[str, Any]:
    """This process's share of `run_sampling`, then the merge (process 0 after a barrier, or the last one)."""
    from ifgan_jax.sampling import run_sampling

    if codes is not None:
        count = len(codes) if count is None else count
        if count != len(codes):
            raise InputError(f"-n {count} does not match the {len(codes)} codes given")
    if count is None or count < 1:
        raise InputError(f"the number of samples must be >= 1, got {count}")
    if batch_size < 1:
        raise InputError(f"batch size must be >= 1, got {batch_size}")
    out = Path(out_dir)
    if _merged_complete(out, count):
        if not overwrite:
            print(f"{out}: this run is already complete", flush=True)
            return {"out_dir": str(out), "count": count, "skipped": True}
    start, stop = share(count, info.num_processes, info.process_id, batch_size)
    result: dict[str, Any] = {"out_dir": str(out), "count": count, "share": [start, stop], "skipped": False,
                              "rate": None, "merged": False}
    if info.process_id == 0 and overwrite:
        _clear_merged(out)
    if stop > start:
        part = run_sampling(G, part_dir(out, info.process_id), count=stop - start, first_index=start,
                            batch_size=batch_size, codes=None if codes is None else codes[start:stop],
                            overwrite=overwrite, **kwargs)
        result["rate"] = part.get("rate")
    if info.runtime:
        barrier(info, "ifgan_sample_parts_written")
        if info.process_id == 0:
            merge(out, info.num_processes, batch_size=batch_size, count=count, codes=codes)
            result["merged"] = True
        barrier(info, "ifgan_sample_merged")
    elif _all_parts_complete(out, info.num_processes, count, batch_size) and take_merge_lock(out):
        merge(out, info.num_processes, batch_size=batch_size, count=count, codes=codes)
        result["merged"] = True
    return result


def _merged_complete(out: Path, count: int) -> bool:
    meta = files.read_json(out / "meta.json")
    return bool(meta and meta.get("complete") and meta.get("count") == count and not (out / PARTS_DIR).exists())


def _clear_merged(out: Path) -> None:
    from ifgan_jax.sampling import OUTPUT_NAMES

    files.remove_outputs(out, OUTPUT_NAMES)


def _expected_shares(count: int, num_processes: int, batch_size: int) -> list[tuple[int, int]]:
    return [share(count, num_processes, i, batch_size) for i in range(num_processes)]


def _all_parts_complete(out: Path, num_processes: int, count: int, batch_size: int) -> bool:
    for i, (start, stop) in enumerate(_expected_shares(count, num_processes, batch_size)):
        if stop == start:
            continue
        meta = files.read_json(part_dir(out, i) / "meta.json")
        if not (meta and meta.get("complete")):
            return False
    return True


def take_merge_lock(out: Path) -> bool:
    """True for exactly one caller per OUT/.parts: the one that creates the lock file."""
    try:
        fd = os.open(out / PARTS_DIR / LOCK_NAME, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def merge(out_dir: str | Path, num_processes: int, *, batch_size: int, count: int,
          codes: np.ndarray | None = None) -> Path:
    """Join the parts in OUT/.parts into OUT exactly as a single-process run lays it out; remove the parts.

    `count` and `batch_size` must be those of the run (they fix each part's share, checked here).
    """
    out = Path(out_dir)
    shares = _expected_shares(count, num_processes, batch_size)
    metas = []
    for i, (start, stop) in enumerate(shares):
        if stop == start:
            continue
        meta = files.read_json(part_dir(out, i) / "meta.json")
        if not meta or not meta.get("complete"):
            raise InputError(f"part {i} ({part_dir(out, i)}) is missing or incomplete; rerun process {i}")
        if meta.get("first_index") != start or meta.get("count") != stop - start:
            raise InputError(f"part {i} holds indices {meta.get('first_index')}+{meta.get('count')}, expected "
                             f"{start}..{stop}: was it run with another -n, --batch-size or process count?")
        metas.append((i, start, stop, meta))
    first = metas[0][0]
    same = ("model", "family", "seed", "codes_space", "image_format", "predictor")
    for i, _, _, meta in metas[1:]:
        diff = [k for k in same if meta.get(k) != metas[0][3].get(k)]
        if diff:
            raise InputError(f"part {i} differs from part {first} in {', '.join(diff)}")
    for name in ARRAY_FILES:
        source = part_dir(out, first) / name
        if not source.is_file():
            continue
        head = np.load(source, mmap_mode="r")
        # open_npy is what run_sampling writes with, so the header bytes match a single-process file.
        merged = files.open_npy(out / name, (count, *head.shape[1:]), head.dtype, resume=False)
        for i, start, stop, _ in metas:
            merged[start:stop] = np.load(part_dir(out, i) / name, mmap_mode="r")
        merged.flush()
        del merged
    images = out / "images"
    for i, *_ in metas:
        part_images = part_dir(out, i) / "images"
        if part_images.is_dir():
            images.mkdir(exist_ok=True)
            for png in sorted(part_images.iterdir()):
                os.replace(png, images / png.name)
    attributes = part_dir(out, first) / "attributes.json"
    if attributes.is_file():
        shutil.copyfile(attributes, out / "attributes.json")
    meta = dict(metas[0][3])
    meta.update(count=count, first_index=0, complete=True)
    if meta.get("codes_sha256") is not None:
        # A single run hashes all of its codes; rebuild that from the merged codes file.
        full = codes if codes is not None else np.load(out / f"{meta['codes_space']}.npy")
        meta["codes_sha256"] = hashlib.sha256(np.ascontiguousarray(full, np.float32).tobytes()).hexdigest()
    files.atomic_write_json(out / "meta.json", meta)
    shutil.rmtree(out / PARTS_DIR)
    return out

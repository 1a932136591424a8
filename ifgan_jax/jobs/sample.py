"""`sample`: InterFaceGAN's generate_data.py at scale: codes and images for sample indices [0, count).

Streamed to disk and resumable (see jobs/rundir.py); shared among processes by jobs/multiprocess.py, each
process writing a part that the merge joins into exactly what a single-process run writes.
"""

from __future__ import annotations

import collections
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ifgan_jax import files, latents
from ifgan_jax.errors import InputError
from ifgan_jax.generator import Generator, load_generator
from ifgan_jax.jobs import multiprocess, rundir
from ifgan_jax.predictors import Predictor, load_predictor
from ifgan_jax.progress import Progress
from ifgan_jax.scoring import make_score_head
from ifgan_jax.zoo.registry import DEFAULT_MODEL

IMAGE_FORMATS = ("png", "npy", "none")
PIPELINE_DEPTH = 2  # batches in flight: the device computes one while the host writes the other
ARRAY_FILES = ("z.npy", "w.npy", "wp.npy", "images.npy", "scores.npy")
IMAGE_FILES = "images/" + "[0-9]" * 6 + ".png"  # image_name's files: only these go with --overwrite
OUTPUT_NAMES = (rundir.META_FILE, rundir.PROGRESS_FILE, *ARRAY_FILES, IMAGE_FILES, "images", "attributes.json")


def image_name(index: int) -> str:
    """File name of sample `index`, as InterFaceGAN's generate_data.py names them."""
    return f"{index:06d}.png"


def run(out_dir: str | Path, *, model: str = DEFAULT_MODEL, weights: str | None = None, num: int | None = None,
        seed: int = 0, batch_size: int = 64, image_format: str = "png", codes_path: str | None = None,
        codes_space: str = "z", overwrite: bool = False, score: str | None = None, show_progress: bool = True,
        devices: int | None = None, micro_batch: int | None = None, coordinator: str | None = None,
        num_processes: int | None = None, process_id: int | None = None,
        coordinator_timeout: float = multiprocess.CONNECT_TIMEOUT_S, noise_mode: str | None = None) -> dict[str, Any]:
    """The `sample` command: load the model (and predictor), sample to `out_dir`, print a summary line."""
    files.output_path(out_dir, "-o")  # an empty string is not the current folder
    info = multiprocess.initialize(coordinator, num_processes, process_id, coordinator_timeout)  # before any JAX work
    codes = files.load_npy(codes_path, "codes") if codes_path else None
    if codes is None and num is None:
        raise InputError("give -n N (or -i CODES.npy)")
    latents.check_seed(seed, "--seed")
    predictor = load_predictor(score) if score else None
    G = load_generator(model, weights=weights, micro_batch=micro_batch, devices=devices)
    options = {"seed": seed, "image_format": image_format, "codes_space": codes_space,
               "show_progress": show_progress, "predictor": predictor, "noise_mode": noise_mode}
    if info.num_processes > 1:
        result = write_shared(G, out_dir, info, count=num, batch_size=batch_size, codes=codes, overwrite=overwrite,
                              **options)
        if not result["skipped"]:
            start, stop = result["share"]
            rate = f", {result['rate']:.1f} img/s" if result["rate"] else ""
            merged = (f"; merged {result['count']} samples into {result['out_dir']}" if result["merged"]
                      else "; the merge is left to the process that finishes last" if not info.runtime else "")
            print(f"process {info.process_id}/{info.num_processes}: samples {start}..{stop}{rate}{merged}")
        return result
    result = write_samples(G, out_dir, count=num, batch_size=batch_size, codes=codes, overwrite=overwrite, **options)
    if not result["skipped"]:
        print(f"wrote {result['count']} samples to {result['out_dir']} ({result['rate']:.1f} img/s)")
    return result


def write_samples(
    G: Generator,
    out_dir: str | Path,
    *,
    count: int | None,
    seed: int = 0,
    batch_size: int = 64,
    image_format: str = "png",
    codes: np.ndarray | None = None,
    codes_space: str = "z",
    overwrite: bool = False,
    show_progress: bool = True,
    predictor: Predictor | None = None,
    first_index: int = 0,
    noise_mode: str | None = None,
) -> dict[str, Any]:
    """Write `{space}.npy`, images and meta.json to out_dir; resumes a killed run of the same job.

    Row r holds sample index `first_index + r` (a process's share in multi-process runs). noise_mode 'random'
    draws each sample's noise from (seed, index), like its code.
    """
    G.check_noise_mode(noise_mode)
    if image_format not in IMAGE_FORMATS:
        raise InputError(f"image format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    if batch_size < 1:
        raise InputError(f"batch size must be >= 1, got {batch_size}")
    codes, count = _checked_count(G, codes, codes_space, count)
    out = Path(out_dir)
    identity = run_identity(G, count=count, first_index=first_index, seed=seed, codes=codes,
                            codes_space=codes_space, image_format=image_format, predictor=predictor,
                            noise_mode=noise_mode)
    layout = G.code_layout(codes_space if codes is not None else "z")
    _check_space(out, count, layout, G.resolution if image_format == "npy" else 0,
                 0 if predictor is None else len(predictor.labels))
    done = rundir.start_run(out, identity, OUTPUT_NAMES, overwrite)
    if done is None:
        return {"out_dir": str(out), "count": count, "skipped": True}

    arrays = {space: files.open_npy(out / f"{space}.npy", (count, *shape), np.float32, resume=done > 0)
              for space, shape in layout.items()}
    images_npy = None
    if image_format == "npy":
        h = G.resolution
        images_npy = files.open_npy(out / "images.npy", (count, h, h, 3), np.uint8, resume=done > 0)
    elif image_format == "png":
        (out / "images").mkdir(exist_ok=True)
    scores = head = None
    if predictor is not None:
        scores = files.open_npy(out / "scores.npy", (count, len(predictor.labels)), np.float32, resume=done > 0)
        head = make_score_head(predictor, with_images=True)
        if done == 0:
            files.atomic_write_json(out / "attributes.json", list(predictor.labels))

    progress = Progress(count, done, desc=f"sample {G.name}", enabled=show_progress)
    pending: collections.deque = collections.deque()  # (stop, future or None) in index order
    in_flight: collections.deque = collections.deque()  # (start, stop, device images)
    memmaps = [*arrays.values(), images_npy, scores]
    with files.PngWriter() as writer:
        for start in range(done, count, batch_size):
            stop = min(start + batch_size, count)
            batch_codes, space = _batch_codes(G, codes, codes_space, seed, start, stop, arrays, first_index)
            noise = {"noise_mode": noise_mode}
            if noise_mode == "random":
                noise["key"] = latents.noise_keys(seed, first_index + start, stop - start)
            if head is None:
                result = G.synthesize_uint8(batch_codes, space, **noise)
            else:
                result = G.synthesize_with(batch_codes, head, predictor.params, space, **noise)
            in_flight.append((start, stop, result))
            if len(in_flight) >= PIPELINE_DEPTH:
                pending.append(_write_batch(out, writer, images_npy, scores, first_index, *in_flight.popleft()))
            _commit_finished(out, pending, memmaps, progress, block=False)
        while in_flight:
            pending.append(_write_batch(out, writer, images_npy, scores, first_index, *in_flight.popleft()))
        _commit_finished(out, pending, memmaps, progress, block=True)
    progress.close()
    rundir.finish_run(out, identity)
    return {"out_dir": str(out), "count": count, "rate": progress.rate, "skipped": False}


def _check_space(out: Path, count: int, layout: dict[str, tuple[int, ...]], image_side: int, columns: int) -> None:
    """Refuse up front (nothing written) when the .npy files would not fit on the disk: their bytes, less what
    an interrupted run of the folder already allocated. PNGs are not counted (their size is unknown ahead); a
    disk that fills with them later ends the run in one line, and it resumes."""
    sizes = {f"{space}.npy": 4 * int(np.prod(shape)) for space, shape in layout.items()}
    sizes["images.npy"] = 3 * image_side * image_side
    sizes["scores.npy"] = 4 * columns
    needed = sum(max(0, count * size - files.allocated_bytes(out / name)) for name, size in sizes.items() if size)
    files.require_space(out, needed, f"{count} samples")


def _checked_count(G: Generator, codes: np.ndarray | None, codes_space: str,
                   count: int | None) -> tuple[np.ndarray | None, int]:
    """(codes checked for the space, the sample count): -n must match the codes given, and be >= 1."""
    if codes is not None:
        codes = G.check_codes(codes, codes_space)
        count = len(codes) if count is None else count
        if count != len(codes):
            raise InputError(f"-n {count} does not match the {len(codes)} codes given")
    if count is None or count < 1:
        raise InputError(f"the number of samples must be >= 1, got {count}")
    return codes, count


def run_identity(G: Generator, *, count: int, first_index: int, seed: int, codes: np.ndarray | None, codes_space: str,
                 image_format: str, predictor: Predictor | None, noise_mode: str | None = None) -> dict[str, Any]:
    """Everything that fixes a sampling run's outputs: the meta.json keys compared when a folder is reused."""
    identity = {
        "model": G.name,
        "family": G.family,
        "count": int(count),
        "first_index": int(first_index),
        "seed": None if codes is not None else int(seed),
        "codes_sha256": None if codes is None else hashlib.sha256(codes.tobytes()).hexdigest(),
        "codes_space": codes_space if codes is not None else "z",
        "image_format": image_format,
        "predictor": None if predictor is None else predictor.name,
    }
    if noise_mode is not None:  # only when given: a default run's meta.json stays as it was
        identity["noise_mode"] = noise_mode
    return identity


def _batch_codes(G, codes, codes_space, seed, start, stop, arrays, first_index) -> Any:
    """Codes of one batch, written into the .npy memmaps; returns (codes, space) for `synthesize`: Z codes of a
    mapped model (sampled or given) are rendered from their truncated W+ codes, written beside them."""
    if codes is not None:
        batch = codes[start:stop]
        arrays[codes_space][start:stop] = batch
        if codes_space != "z" or not G.has_mapping:
            return batch, codes_space
        z = batch
    else:
        z = G.sample_latents(seed, first_index + start, stop - start)
        arrays["z"][start:stop] = z
        if not G.has_mapping:
            return z, "z"
    w = G.codes_from_z(z, "w")
    wp = G.truncate(w)
    arrays["w"][start:stop] = w
    arrays["wp"][start:stop] = np.asarray(wp)
    return wp, G.synthesis_space


def _write_batch(out: Path, writer: files.PngWriter, images_npy, scores, first_index: int, start: int, stop: int,
                 result: Any):
    if isinstance(result, dict):
        scores[start:stop] = np.asarray(result["scores"])
        result = result["images"]
    host = np.asarray(result)  # waits for the device
    if images_npy is not None:
        images_npy[start:stop] = host
        return stop, None
    if (out / "images").is_dir():
        paths = [out / "images" / image_name(first_index + i) for i in range(start, stop)]
        return stop, writer.submit(paths, host)
    return stop, None


def _commit_finished(out, pending, memmaps, progress: Progress, *, block: bool) -> None:
    """Record progress for every leading batch whose writes are on disk (in index order)."""
    committed = None
    last_done = progress.done
    while pending and (block or pending[0][1] is None or pending[0][1].done()):
        stop, future = pending.popleft()
        if future is not None:
            future.result()  # re-raises a write error
        committed = stop
    if committed is None:
        return
    for memmap in memmaps:
        if memmap is not None:
            files.flush_npy(memmap)  # on disk before the progress says so; out of the RSS after
    rundir.write_progress(out, committed)
    progress.update(committed - last_done)


def write_shared(G: Generator, out_dir: str | Path, info: multiprocess.ProcessInfo, *, count: int | None,
                 batch_size: int = 64, codes: np.ndarray | None = None, overwrite: bool = False,
                 **options: Any) -> dict[str, Any]:
    """This process's share of `write_samples` in OUT/.parts/, then the merge (exactly one process merges)."""
    codes_space = options.get("codes_space", "z")
    codes, count = _checked_count(G, codes, codes_space, count)
    if batch_size < 1:
        raise InputError(f"batch size must be >= 1, got {batch_size}")
    out = Path(out_dir)
    # The merged folder must hold this very run (seed, model, codes...), as a single-process rerun checks.
    identity = run_identity(G, count=count, first_index=0, seed=options.get("seed", 0), codes=codes,
                            codes_space=codes_space, image_format=options.get("image_format", "png"),
                            predictor=options.get("predictor"), noise_mode=options.get("noise_mode"))
    if not overwrite:
        if multiprocess.merged_complete(out, identity):
            print(f"{out}: this run is already complete", flush=True)
            return {"out_dir": str(out), "count": count, "skipped": True}
        if (out / rundir.META_FILE).is_file():
            rundir.open_run_dir(out, identity, OUTPUT_NAMES, False, lock=False)  # raises for a different run
    if info.process_id == 0 and overwrite:
        files.remove_outputs(out, OUTPUT_NAMES)

    def write_part(part: Path, start: int, stop: int) -> dict[str, Any]:
        return write_samples(G, part, count=stop - start, first_index=start, batch_size=batch_size,
                             codes=None if codes is None else codes[start:stop], overwrite=overwrite, **options)

    shared = multiprocess.run_shared(
        out, info, job="sample", count=count, batch_size=batch_size, write_part=write_part,
        merge=lambda: merge(out, info.num_processes, batch_size=batch_size, count=count, codes=codes))
    return {"out_dir": str(out), "count": count, "share": list(shared.share), "skipped": False,
            "rate": None if shared.part is None else shared.part.get("rate"), "merged": shared.did_merge}


def merge(out_dir: str | Path, num_processes: int, *, batch_size: int, count: int,
          codes: np.ndarray | None = None) -> Path:
    """Join the parts in OUT/.parts into OUT exactly as a single-process run lays it out; remove the parts.

    `count` and `batch_size` must be those of the run (they fix each part's share, checked here).
    """
    out = Path(out_dir)
    metas = []
    for i, (start, stop) in enumerate(multiprocess.shares(count, num_processes, batch_size)):
        if stop == start:
            continue
        part = multiprocess.part_dir(out, i)
        meta = files.read_json(part / rundir.META_FILE)
        if not meta or not meta.get("complete"):
            raise InputError(f"part {i} ({part}) is missing or incomplete; rerun process {i}")
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
        source = multiprocess.part_dir(out, first) / name
        if not source.is_file():
            continue
        head = np.load(source, mmap_mode="r")
        # open_npy is what write_samples writes with, so the header bytes match a single-process file.
        merged = files.open_npy(out / name, (count, *head.shape[1:]), head.dtype, resume=False)
        for i, start, stop, _ in metas:
            merged[start:stop] = np.load(multiprocess.part_dir(out, i) / name, mmap_mode="r")
            files.flush_npy(merged)
        del merged
    images = out / "images"
    for i, *_ in metas:
        part_images = multiprocess.part_dir(out, i) / "images"
        if part_images.is_dir():
            images.mkdir(exist_ok=True)
            for png in sorted(part_images.iterdir()):
                os.replace(png, images / png.name)
    attributes = multiprocess.part_dir(out, first) / "attributes.json"
    if attributes.is_file():
        shutil.copyfile(attributes, out / "attributes.json")
    meta = dict(metas[0][3])
    meta.update(count=count, first_index=0, complete=True)
    if meta.get("codes_sha256") is not None:
        # A single run hashes all of its codes; rebuild that from the merged codes file.
        full = codes if codes is not None else np.load(out / f"{meta['codes_space']}.npy")
        meta["codes_sha256"] = hashlib.sha256(np.ascontiguousarray(full, np.float32).tobytes()).hexdigest()
    files.atomic_write_json(out / rundir.META_FILE, meta)
    shutil.rmtree(out / multiprocess.PARTS_DIR)
    return out

"""Streaming, resumable sampling to disk: codes and images for sample indices [0, count)."""

from __future__ import annotations

import collections
import hashlib
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ifgan_jax import files
from ifgan_jax.errors import InputError
from ifgan_jax.generator import Generator
from ifgan_jax.predictors import Predictor
from ifgan_jax.progress import Progress
from ifgan_jax.scoring import make_score_head

IMAGE_FORMATS = ("png", "npy", "none")
PROGRESS_FILE = ".progress.json"
PIPELINE_DEPTH = 2  # batches in flight: the device computes one while the host writes the other
OUTPUT_NAMES = ("meta.json", PROGRESS_FILE, "z.npy", "w.npy", "wp.npy", "images.npy", "images", "scores.npy",
                "attributes.json")


def image_name(index: int) -> str:
    """File name of sample `index`, as InterFaceGAN's generate_data.py names them."""
    return f"{index:06d}.png"


def run_sampling(
    G: Generator,
    out_dir: str | Path,
    *,
    count: int,
    seed: int = 0,
    batch_size: int = 64,
    image_format: str = "png",
    codes: np.ndarray | None = None,
    codes_space: str = "z",
    overwrite: bool = False,
    show_progress: bool = True,
    predictor: Predictor | None = None,
    first_index: int = 0,
) -> dict[str, Any]:
    """Write `{space}.npy`, images and meta.json to out_dir; resumes a killed run of the same job.

    Row r holds sample index `first_index + r` (a host's share in multi-process runs).
    """
    if image_format not in IMAGE_FORMATS:
        raise InputError(f"image format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    if batch_size < 1:
        raise InputError(f"batch size must be >= 1, got {batch_size}")
    if codes is not None:
        codes = G.check_codes(codes, codes_space)
        count = len(codes) if count is None else count
        if count != len(codes):
            raise InputError(f"-n {count} does not match the {len(codes)} codes given")
    if count is None or count < 1:
        raise InputError(f"the number of samples must be >= 1, got {count}")
    out = Path(out_dir)
    identity = {
        "model": G.name,
        "family": G.arch.family,
        "count": int(count),
        "first_index": int(first_index),
        "seed": None if codes is not None else int(seed),
        "codes_sha256": None if codes is None else hashlib.sha256(codes.tobytes()).hexdigest(),
        "codes_space": codes_space if codes is not None else "z",
        "image_format": image_format,
        "predictor": None if predictor is None else predictor.name,
    }
    meta = {**identity, "versions": _versions(), "complete": False}
    done = _prepare_dir(out, identity, overwrite)
    if done is None:
        return {"out_dir": str(out), "count": count, "skipped": True}

    layout = _code_layout(G, codes_space if codes is not None else "z")
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
    if done == 0:
        files.atomic_write_json(out / "meta.json", meta)

    progress = Progress(count, done, desc=f"sample {G.name}", enabled=show_progress)
    pending: collections.deque = collections.deque()  # (stop, future or None) in index order
    in_flight: collections.deque = collections.deque()  # (start, stop, device images)
    with files.PngWriter() as writer:
        for start in range(done, count, batch_size):
            stop = min(start + batch_size, count)
            batch_codes = _batch_codes(G, codes, codes_space, seed, start, stop, arrays, first_index)
            space = codes_space if codes is not None else _synth_space(G)
            if head is None:
                result = G.synthesize_uint8(batch_codes, space)
            else:
                result = G.synthesize_with(batch_codes, head, predictor.params, space)
            in_flight.append((start, stop, result))
            if len(in_flight) >= PIPELINE_DEPTH:
                pending.append(_write_batch(out, writer, images_npy, scores, first_index, *in_flight.popleft()))
            _commit_finished(out, pending, [*arrays.values(), images_npy, scores], progress, block=False)
        while in_flight:
            pending.append(_write_batch(out, writer, images_npy, scores, first_index, *in_flight.popleft()))
        _commit_finished(out, pending, [*arrays.values(), images_npy, scores], progress, block=True)
    progress.close()
    files.atomic_write_json(out / "meta.json", {**meta, "complete": True})
    (out / PROGRESS_FILE).unlink(missing_ok=True)
    return {"out_dir": str(out), "count": count, "rate": progress.rate, "skipped": False}


def _synth_space(G: Generator) -> str:
    # Models with a mapping network synthesize from the truncated W+ codes written beside z.
    return "wp" if G.arch.truncate is not None else "z"


def _code_layout(G: Generator, space: str) -> dict[str, tuple[int, ...]]:
    if space != "z" or G.arch.mapping is None:
        return {space: G.arch.code_shape(space)}
    return {s: G.arch.code_shape(s) for s in ("z", "w", "wp")}


def _batch_codes(G, codes, codes_space, seed, start, stop, arrays, first_index) -> Any:
    """Codes of one batch, written into the .npy memmaps; returns what `synthesize` takes."""
    if codes is not None:
        batch = codes[start:stop]
        arrays[codes_space][start:stop] = batch
        if codes_space != "z" or G.arch.mapping is None:
            return batch
        z = batch
    else:
        z = G.sample_latents(seed, first_index + start, stop - start)
        arrays["z"][start:stop] = z
        if G.arch.mapping is None:
            return z
    w = G.mapping(z)
    wp = G.truncate(w)
    arrays["w"][start:stop] = np.asarray(w)
    arrays["wp"][start:stop] = np.asarray(wp)
    return wp


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
            memmap.flush()
    files.atomic_write_json(out / PROGRESS_FILE, {"done": committed})
    progress.update(committed - last_done)


def _prepare_dir(out: Path, identity: dict, overwrite: bool) -> int | None:
    """Samples already committed (0 for a fresh run), or None when the same run is complete."""
    meta = files.open_run_dir(out, identity, OUTPUT_NAMES, overwrite)
    if meta is None:
        return 0
    if meta.get("complete"):
        print(f"{out}: this run is already complete", flush=True)
        return None
    try:
        return int(files.json.loads((out / PROGRESS_FILE).read_text())["done"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _versions() -> dict[str, str]:
    import flax

    import ifgan_jax

    return {"ifgan_jax": ifgan_jax.__version__, "jax": jax.__version__, "flax": flax.__version__,
            "numpy": np.__version__}

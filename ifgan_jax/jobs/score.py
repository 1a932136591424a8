"""`score`: attribute scores for codes (synthesized and scored on device, no image written) or for images."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ifgan_jax import files
from ifgan_jax.errors import InputError
from ifgan_jax.generator import Generator, load_generator
from ifgan_jax.images import load_images
from ifgan_jax.predictors import Predictor, load_predictor
from ifgan_jax.progress import Progress
from ifgan_jax.scoring import make_score_head, score_codes
from ifgan_jax.zoo.registry import DEFAULT_MODEL

CHECK_ROWS = 1 << 18  # codes validated per chunk before scoring starts


def run(out_dir: str, *, source: str, predictor: str = "fer", space: str = "z", batch_size: int = 256,
        image_size: int = 64, model: str = DEFAULT_MODEL, weights: str | None = None, devices: int | None = None,
        micro_batch: int | None = None, show_progress: bool = True) -> dict[str, Any]:
    """Score CODES.npy (through the model) or a folder of images; write scores.npy and attributes.json."""
    if batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")
    files.check_writable(files.output_path(out_dir, "-o"), "output folder")
    scorer = load_predictor(predictor)
    source_path, out_path = Path(source), Path(out_dir)
    names, failures = None, []
    if source_path.is_dir():
        # FER resizes to its own 64x64 input; keep the images at that size to bound memory.
        loaded = load_images(source_path, image_size)
        failures = loaded.failures
        if failures:
            print(f"skipped {len(failures)} unreadable files (see {out_path / 'failed.json'})")
        progress = Progress(len(loaded.uint8), desc=f"score {predictor}", enabled=show_progress)
        scores = _collect(_image_batches(scorer, loaded.uint8, batch_size), progress, len(scorer.labels))
        names = list(loaded.names)
    else:
        G = load_generator(model, weights=weights, micro_batch=micro_batch, devices=devices)
        # Memory-mapped and checked in chunks: 10M codes are 4 GB, read from disk as the batches need them.
        codes = files.load_npy(source_path, "codes", mmap=True)
        for start in range(0, max(len(codes), 1), CHECK_ROWS):
            try:
                G.check_codes(codes[start : start + CHECK_ROWS], space)
            except InputError as err:
                raise InputError(f"-i {source_path} (rows from {start}): {err}") from None
        if codes.ndim == len(G.code_shape(space)):
            codes = codes[None]  # one code, as check_codes takes it
        if len(codes) == 0:
            raise InputError(f"-i {source_path} holds no codes (shape {codes.shape})")
        progress = Progress(len(codes), desc=f"score {predictor} on {G.name}", enabled=show_progress)
        scores = _collect(_code_batches(G, codes, scorer, space, batch_size), progress, len(scorer.labels))
    try:
        out_path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create {out_path}: {err.strerror or err}") from None
    files.atomic_save_npy(out_path / "scores.npy", scores.astype(np.float32))
    files.atomic_write_json(out_path / "attributes.json", list(scorer.labels))
    if names is not None:
        files.atomic_write_json(out_path / "images.json", names)
        if failures:
            files.atomic_write_json(out_path / "failed.json", failures)
    means = ", ".join(f"{label} {m:.3f}" for label, m in zip(scorer.labels, scores.mean(0), strict=True))
    print(f"scored {len(scores)} samples -> {out_path / 'scores.npy'} (mean: {means})")
    return {"count": len(scores), "labels": list(scorer.labels)}


def _code_batches(G: Generator, codes: np.ndarray, scorer: Predictor, space: str,
                  batch_size: int) -> Iterator[tuple[Any, int]]:
    """(device scores, rows) per batch: synthesis and scoring fused, as `score_codes` runs them."""
    head = make_score_head(scorer, with_images=False)  # built once: it keys the jit cache
    for start in range(0, len(codes), batch_size):
        batch = codes[start : start + batch_size]
        yield score_codes(G, batch, scorer, space=space, batch_size=batch_size, head=head), len(batch)


def _image_batches(scorer: Predictor, images: np.ndarray, batch_size: int) -> Iterator[tuple[Any, int]]:
    """(device scores, rows) per batch; the last batch is padded to `batch_size` as the predictor pads (one compile)."""
    if len(images) <= batch_size:
        yield scorer(images, batch_size=batch_size), len(images)
        return
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        real = len(batch)
        if real < batch_size:
            batch = np.concatenate([batch, np.zeros((batch_size - real, *batch.shape[1:]), batch.dtype)])
        yield scorer(batch, batch_size=batch_size), real


def _collect(batches: Iterable[tuple[Any, int]], progress: Progress, columns: int) -> np.ndarray:
    """Scores (N, K) float32 on the host, counted in `progress` as they arrive.

    The next batch is dispatched before the previous one is copied back, so the device never waits on the copy.
    """
    outs: list[np.ndarray] = []

    def take(result: Any, rows: int) -> None:
        outs.append(np.asarray(result, np.float32)[:rows])
        progress.update(rows)

    pending = None
    for item in batches:  # dispatches batch k, then waits for batch k - 1
        if pending is not None:
            take(*pending)
        pending = item
    if pending is not None:
        take(*pending)
    progress.close()
    return np.concatenate(outs) if outs else np.zeros((0, columns), np.float32)

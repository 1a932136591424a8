"""`score`: attribute scores for codes (synthesized and scored on device, no image written) or for images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ifgan_jax import files
from ifgan_jax.errors import InputError
from ifgan_jax.generator import load_generator
from ifgan_jax.images import load_images
from ifgan_jax.predictors import load_predictor
from ifgan_jax.scoring import score_codes


def run(out_dir: str, *, source: str, predictor: str = "fer", space: str = "z", batch_size: int = 256,
        image_size: int = 64, model: str = "dcgan_digiface", weights: str | None = None, devices: int | None = None,
        micro_batch: int | None = None) -> dict[str, Any]:
    """Score CODES.npy (through the model) or a folder of images; write scores.npy and attributes.json."""
    if batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")
    scorer = load_predictor(predictor)
    source_path, out_path = Path(source), Path(out_dir)
    names, failures = None, []
    if source_path.is_dir():
        # FER resizes to its own 64x64 input; keep the images at that size to bound memory.
        loaded = load_images(source_path, image_size)
        failures = loaded.failures
        if failures:
            print(f"skipped {len(failures)} unreadable files (see {out_path / 'failed.json'})")
        scores = np.asarray(scorer(loaded.uint8, batch_size=batch_size))
        names = list(loaded.names)
    else:
        G = load_generator(model, weights=weights, micro_batch=micro_batch, devices=devices)
        codes = G.check_codes(files.load_npy(source_path, "codes"), space)
        scores = np.asarray(score_codes(G, codes, scorer, space=space, batch_size=batch_size))
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

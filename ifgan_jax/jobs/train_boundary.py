"""The `train-boundary` job: one boundary .npy per score column and a report.json, from two .npy files.

Everything is read, checked and trained in memory before the first file is written; each file is written
atomically, so a failed run leaves no partial output.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ifgan_jax.boundary import (
    BOUNDARY_SUFFIX,
    TrainedBoundaries,
    boundary_file_name,
    save_boundary,
    split_by_score,
    train_boundaries,
)
from ifgan_jax.errors import InputError
from ifgan_jax.files import atomic_write_json, check_file_name, check_writable, load_npy, output_path
from ifgan_jax.progress import Progress

REPORT_FILE = "report.json"


def _check_name(name: Any) -> str:
    """An attribute name that makes a valid `NAME_boundary.npy` (characters and length checked up front)."""
    if not isinstance(name, str) or not name:
        raise InputError(f"attribute name {name!r} cannot be used in a file name")
    check_file_name(name, "attribute name", suffix=BOUNDARY_SUFFIX)
    return name


def attribute_names(attributes: Sequence[str] | None, attributes_json: str | os.PathLike | None,
                    scores: str | os.PathLike, num_columns: int) -> list[str]:
    """Column names from `attributes` (--attribute), `attributes_json`, attributes.json beside `scores`, or attr0.."""
    if attributes and attributes_json:
        raise InputError("give --attribute or --attributes-json, not both")
    if attributes:
        names, source = list(attributes), "--attribute"
    else:
        path = Path(attributes_json) if attributes_json else Path(scores).parent / "attributes.json"
        if not path.is_file():
            if attributes_json:
                raise InputError(f"--attributes-json file {path} does not exist")
            return [f"attr{k}" for k in range(num_columns)]
        try:
            names = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InputError(f"cannot read attribute names from {path}: {err}") from None
        if not isinstance(names, list):
            raise InputError(f"{path} must hold a JSON list of column names, got {type(names).__name__}")
        source = str(path)
    if len(names) != num_columns:
        raise InputError(f"{source} gives {len(names)} names but the scores have {num_columns} columns")
    names = [_check_name(n) for n in names]
    if len(set(names)) != len(names):
        raise InputError(f"{source} repeats an attribute name: {names}")
    return names


def run(
    out_dir: str | os.PathLike,
    *,
    codes: str | os.PathLike,
    scores: str | os.PathLike,
    attributes: Sequence[str] | None = None,
    attributes_json: str | os.PathLike | None = None,
    chosen_num_or_ratio: float = 0.02,
    split_ratio: float = 0.7,
    invalid_value: float | None = None,
    solver: str = "jax",
    seed: int = 0,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Train one boundary per column of the `scores` .npy on the `codes` .npy and write them to `out_dir`.

    One column writes `boundary.npy`, several write `NAME_boundary.npy` each; `report.json` holds the
    counts, accuracies and solver details per attribute, and is returned. Prints one line per attribute
    and a summary.
    """
    t0 = time.perf_counter()
    out = output_path(out_dir, "-o")
    if out.exists() and not out.is_dir():
        raise InputError(f"output {out} exists and is not a directory")
    check_writable(out, "output folder")  # before minutes of training, not after
    code_array = load_npy(codes, "codes")
    score_array = load_npy(scores, "scores")
    if score_array.ndim not in (1, 2):
        raise InputError(f"scores must have shape (N,) or (N, K), got {score_array.shape}")
    num_columns = 1 if score_array.ndim == 1 else score_array.shape[1]
    if num_columns < 1:
        raise InputError(f"scores have no columns: {score_array.shape}")
    names = attribute_names(attributes, attributes_json, scores, num_columns)
    t_load = time.perf_counter() - t0
    # Everything is validated and trained in memory before the first file is written.
    options = {"chosen_num_or_ratio": chosen_num_or_ratio, "split_ratio": split_ratio,
               "invalid_value": invalid_value, "solver": solver, "seed": seed}
    trained = _train(code_array, score_array, names, options, show_progress)
    written = ["boundary.npy"] if num_columns == 1 else [boundary_file_name(n) for n in names]
    report = {
        "codes": str(codes), "scores": str(scores), "codes_shape": list(code_array.shape),
        "solver": solver, "seed": seed, "chosen_num_or_ratio": chosen_num_or_ratio,
        "split_ratio": split_ratio, "invalid_value": invalid_value,
        "timing": {"load_s": t_load, "train_s": trained.seconds, "total_s": None},
        "attributes": {name: {"file": f, **rep} for name, f, rep in zip(names, written, trained.reports, strict=True)},
    }
    out.mkdir(parents=True, exist_ok=True)
    for k, f in enumerate(written):
        save_boundary(out / f, trained.boundaries[k : k + 1], dtype=np.float32)
    report["timing"]["total_s"] = time.perf_counter() - t0
    atomic_write_json(out / REPORT_FILE, report)
    for name, rep in zip(names, trained.reports, strict=True):
        acc = rep["accuracy"]
        val = "n/a" if acc["val"] is None else f"{acc['val']:.4f}"
        print(f"{name}: train {rep['counts']['train']} val {rep['counts']['val']} "
              f"(dropped {rep['counts']['invalid'] + rep['counts']['nonfinite']}), val accuracy {val}")
    print(f"wrote {len(written)} boundar{'y' if len(written) == 1 else 'ies'} and {REPORT_FILE} to {out} "
          f"({report['timing']['total_s']:.1f} s)")
    return report


def _train(codes: np.ndarray, scores: np.ndarray, names: list[str], options: dict[str, Any],
           show_progress: bool) -> TrainedBoundaries:
    """train_boundaries with progress on stderr.

    The SVC solver reports each attribute (minutes each on large N). The JAX solver fits every attribute in one
    program: one line when it is done (a terminal's live bar shows the clock running), none before it, so bad
    input found inside train_boundaries still ends in exactly one line.
    """
    if options["solver"] != "svc":
        label = f"{len(names)} attribute{'' if len(names) == 1 else 's'}"
        progress = Progress(len(names), desc=f"train-boundary jax: {label} in one program", unit="attr",
                            enabled=show_progress)
        trained = train_boundaries(codes, scores, names=names, **options)
        progress.update(len(names))
        progress.close()
        return trained
    columns = scores[:, None] if scores.ndim == 1 else scores
    selection = {k: options[k] for k in ("chosen_num_or_ratio", "split_ratio", "invalid_value", "seed")}
    for k, name in enumerate(names):  # every column's selection is checked before the first (slow) fit
        try:
            split_by_score(None, columns[:, k], **selection)
        except InputError as err:
            raise InputError(f"attribute {name!r} (column {k}): {err}") from None
    progress = Progress(len(names), desc="train-boundary svc", unit="attr", enabled=show_progress)
    parts = []
    for k, name in enumerate(names):
        try:
            parts.append(train_boundaries(codes, columns[:, k : k + 1], names=[name], **options))
        except InputError as err:  # trained alone, the column is column 0 to train_boundaries: name the real one
            single, real = f"attribute {name!r} (column 0)", f"attribute {name!r} (column {k})"
            raise InputError(str(err).replace(single, real, 1)) from None
        progress.update(1, info=name)
    progress.close()
    return TrainedBoundaries(np.concatenate([t.boundaries for t in parts]), np.concatenate([t.coefs for t in parts]),
                             np.concatenate([t.intercepts for t in parts]), sum((t.splits for t in parts), ()),
                             sum((t.reports for t in parts), ()), sum(t.seconds for t in parts))


"""The `analyze` job: the paper's analyses of one model and predictor, in one resumable folder.

Stages, each written atomically and reused when a rerun of the same command finds it on disk:

1. `samples/`: N codes sampled and scored in one fused pass (`jobs/sample.write_samples`, no images; itself
   resumable batch by batch), or the codes and scores given with -c/-s;
2. `boundaries/`: one boundary per analysed score column (`train_boundaries`, InterFaceGAN's split), then
   each conditional pair's projected boundary;
3. `rescoring/`: M fresh samples (indices N..N+M of the same seed) moved to -D and +D along every boundary in
   absolute mode and scored again, one file per boundary;
4. `grids/`, the heatmaps, `analysis.json` and `report.md` (jobs/analyze_report.py).

Stages 1-3 are `pipeline`, which `demo` runs too (its attributes, pairs, fresh samples and distances), and
`write_grids` draws both jobs' edit grids.

A column that is 1 minus another (gender's "female" = 1 - "male") is dropped: its boundary would be the
exact opposite of the other's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ifgan_jax import analysis, files, latents
from ifgan_jax.boundary import TrainedBoundaries, boundary_file_name, save_boundary, train_boundaries
from ifgan_jax.errors import InputError
from ifgan_jax.generator import Generator, load_generator
from ifgan_jax.jobs import analyze_report, rundir
from ifgan_jax.jobs.sample import write_samples
from ifgan_jax.predictors import Predictor, load_predictor, scores_from_npy
from ifgan_jax.progress import Progress
from ifgan_jax.scoring import make_score_head, score_codes
from ifgan_jax.zoo.registry import DEFAULT_MODEL

DEFAULT_NUM = 20000
MIN_SAMPLES = 200  # fewer leaves too few top/bottom samples for a boundary
GRID_DISTANCES = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)
# What --overwrite removes: the job's files by pattern (a folder goes only when that empties it), samples/ whole.
PIPELINE_OUTPUTS = ("samples", "boundaries/" + boundary_file_name("*"), "boundaries", "rescoring/*.npy", "rescoring")
OUTPUT_NAMES = (rundir.META_FILE, rundir.PROGRESS_FILE, *PIPELINE_OUTPUTS, "grids/*.png", "grids", "analysis.json",
                "report.md", *analyze_report.HEATMAPS)


def conditioned_name(primal: str, condition: str) -> str:
    """The boundary `primal` made orthogonal to `condition`: B_c_A (file B_c_A_boundary.npy)."""
    return f"{primal}_c_{condition}"


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """What `pipeline` computed (and wrote) for the jobs' own stages to use."""

    codes: np.ndarray  # (N, d) the training codes
    scores: np.ndarray  # (N, L) their scores, one column per predictor label
    names: list[str]  # the analysed attributes, one trained boundary each
    trained: TrainedBoundaries  # in `names` order
    pairs: list[tuple[str, str]]  # (b, a): boundary b made orthogonal to a, named conditioned_name(b, a)
    boundaries: dict[str, np.ndarray]  # every boundary (1, d) by name: the trained ones, then the conditioned
    edits: np.ndarray  # (M, B + P, S, K) the fresh codes' scores of `names` along every boundary, every distance
    timings: dict[str, float]  # sample_and_score_s, train_boundaries_s, rescoring_s

    @property
    def stacked(self) -> np.ndarray:
        """(B + P, d): every boundary, in `boundaries` order."""
        return np.concatenate(list(self.boundaries.values()))


def run(out_dir: str | os.PathLike, *, model: str = DEFAULT_MODEL, weights: str | None = None,
        predictor: str = "fer,age,gender,pose", num: int | None = None, seed: int = 0,
        codes_path: str | os.PathLike | None = None, scores_path: str | os.PathLike | None = None,
        rescore_samples: int = 1000, distance: float = analysis.DISTANCE, pairs: str | None = None,
        min_cosine: float = 0.25, max_pairs: int = 6, grid_samples: int = 6, batch_size: int = 256,
        overwrite: bool = False, show_progress: bool = True, devices: int | None = None,
        micro_batch: int | None = None) -> dict[str, Any]:
    """The `analyze` command: validate everything, then run (or resume) every stage into `out_dir`."""
    t_start = time.perf_counter()
    files.output_path(out_dir, "-o")  # an empty string is not the current folder
    _check_options(num=num, seed=seed, codes_path=codes_path, scores_path=scores_path,
                   rescore_samples=rescore_samples, distance=distance, min_cosine=min_cosine,
                   max_pairs=max_pairs, grid_samples=grid_samples, batch_size=batch_size)
    given = _load_given(codes_path, scores_path, num)
    scorer = load_predictor(predictor)  # unknown names, a missing wheel: before anything is loaded or written
    if given is not None:
        _check_columns(given[1], scores_path, scorer)
    G = load_generator(model, weights=weights, micro_batch=micro_batch, devices=devices)
    if given is not None:
        given = (G.check_codes(given[0], "z"), given[1])
    count = len(given[0]) if given is not None else (num or DEFAULT_NUM)
    labels = list(scorer.labels)
    head = make_score_head(scorer, with_images=False)  # one head: the probe and the re-scoring share compiles
    # Which columns are analysed, known before anything is written: from the scores given, or a probe batch.
    probe = given[1] if given is not None else np.asarray(
        score_codes(G, G.sample_latents(seed, 0, min(count, 64)), scorer, head=head))
    dropped = analysis.complement_columns(probe, labels)
    names = [label for label in labels if label not in dropped]
    chosen = None if pairs is None else _parse_pairs(pairs, names, dropped)

    out = Path(out_dir)
    identity = {
        "job": "analyze", "model": G.name, "predictor": scorer.name, "count": int(count),
        "seed": int(seed), "codes_sha256": None if given is None else _sha256(given[0]),
        "scores_sha256": None if given is None else _sha256(given[1]),
        "rescore_samples": int(rescore_samples), "distance": float(distance),
        "pairs": None if chosen is None else [analysis.pair_name(b, a) for b, a in chosen],
        "min_cosine": float(min_cosine), "max_pairs": int(max_pairs), "grid_samples": int(grid_samples),
    }
    if rundir.start_run(out, identity, OUTPUT_NAMES, overwrite) is None:
        return {"out_dir": str(out), "skipped": True, **(files.read_json(out / "analysis.json") or {})}

    fresh = G.sample_latents(seed, count, rescore_samples)  # indices after the training set's: new faces
    p = pipeline(G, out, scorer, names, fresh=fresh, distances=(-distance, distance), count=count, seed=seed,
                 given=given, pairs=chosen, min_cosine=min_cosine, max_pairs=max_pairs, batch_size=batch_size,
                 head=head, show_progress=show_progress)
    timings = dict(p.timings)
    t = time.perf_counter()
    grids = {}
    if grid_samples:
        (out / "grids").mkdir(exist_ok=True)
        grids = write_grids(G, out, fresh[:grid_samples], list(p.boundaries), p.stacked, scorer,
                            distances=GRID_DISTANCES, plain=names, pairs=p.pairs, prefix="grids/")
    timings["grids_s"] = time.perf_counter() - t

    columns = [labels.index(name) for name in names]
    summary = _summary(names, dropped, p.scores[:, columns], p.trained, analysis.cosine_matrix(p.trained.boundaries),
                       p.edits, p.pairs, identity=identity, codes_path=codes_path, scores_path=scores_path,
                       chose_pairs="--pairs" if pairs is not None else f"|cosine| >= {min_cosine:g}, "
                       f"at most {max_pairs}", grids=grids)
    summary["timings"] = {**timings, "total_s": time.perf_counter() - t_start}
    summary["heatmaps"] = analyze_report.write_heatmaps(out, summary)
    files.atomic_write_json(out / "analysis.json", summary)
    files.atomic_write_bytes(out / "report.md", analyze_report.report(summary).encode())
    rundir.finish_run(out, identity)
    _print_summary(out, summary)
    return {"out_dir": str(out), "skipped": False, **summary}


def _check_options(*, num, seed, codes_path, scores_path, rescore_samples, distance, min_cosine, max_pairs,
                   grid_samples, batch_size) -> None:
    """Checks on plain values, before any file or model is read."""
    latents.check_seed(seed, "--seed")
    if (codes_path is None) != (scores_path is None):
        raise InputError("give -c CODES.npy and -s SCORES.npy together (or neither, to sample -n codes)")
    if codes_path is None and num is not None and num < MIN_SAMPLES:
        raise InputError(f"-n must be >= {MIN_SAMPLES} for meaningful boundaries, got {num}")
    if rescore_samples < 1:
        raise InputError(f"--rescore-samples must be >= 1, got {rescore_samples}")
    if not (math.isfinite(distance) and distance > 0):
        raise InputError(f"--distance must be a positive number, got {distance}")
    if not 0 <= min_cosine <= 1:
        raise InputError(f"--min-cosine must be in [0, 1], got {min_cosine}")
    if max_pairs < 0:
        raise InputError(f"--max-pairs must be >= 0, got {max_pairs}")
    if grid_samples < 0:
        raise InputError(f"--grid-samples must be >= 0, got {grid_samples}")
    if batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")


def _load_given(codes_path, scores_path, num) -> tuple[np.ndarray, np.ndarray] | None:
    """The -c codes and -s scores, checked to hold the same N (and -n, when given, to agree)."""
    if codes_path is None:
        return None
    codes = files.load_npy(codes_path, "-c codes")
    if codes.ndim != 2:
        raise InputError(f"-c {codes_path}: codes must have shape (N, d), got {codes.shape}")
    try:
        scores = scores_from_npy(scores_path, len(codes))
    except InputError as err:
        if not Path(scores_path).is_file():
            raise InputError(f"-s scores file {scores_path} does not exist") from None
        raise InputError(f"-s {err} (-c {codes_path} holds {len(codes)} codes)") from None
    if num is not None and num != len(codes):
        raise InputError(f"-n {num} does not match the {len(codes)} codes of -c {codes_path}")
    if len(codes) < MIN_SAMPLES:
        raise InputError(f"-c {codes_path} holds {len(codes)} codes; at least {MIN_SAMPLES} are needed")
    return codes, scores


def _check_columns(scores: np.ndarray, scores_path, scorer: Predictor) -> None:
    """-s must hold the predictor's columns: its edits are scored by the same predictor."""
    labels = list(scorer.labels)
    if scores.shape[1] != len(labels):
        raise InputError(f"-s {scores_path} has {scores.shape[1]} columns; --predictor {scorer.name} gives "
                         f"{len(labels)} ({', '.join(labels)})")
    names = files.read_json(Path(scores_path).parent / "attributes.json")
    if isinstance(names, list) and names != labels:
        raise InputError(f"-s {scores_path}: its attributes.json names {names}, --predictor {scorer.name} "
                         f"gives {labels}")
    if np.isnan(scores).any():
        raise InputError(f"-s {scores_path} contains NaN scores; the analyses need every sample scored")


def _parse_pairs(text: str, names: list[str], dropped: dict[str, str]) -> list[tuple[str, str]]:
    """--pairs as [(b, a), ...]; a dropped column is named with the one it mirrors."""
    for token in text.replace(analysis.PAIR_SEPARATOR, ",").split(","):
        if token.strip() in dropped:
            raise InputError(f"--pairs {text!r}: {token.strip()} is 1 - {dropped[token.strip()]}, not a boundary of "
                             f"its own; use {dropped[token.strip()]}")
    try:
        return analysis.parse_pairs(text, names)
    except InputError as err:
        raise InputError(f"--pairs: {err}") from None


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def pipeline(G: Generator, out: Path, scorer: Predictor, names: Sequence[str], *, fresh: np.ndarray,
             distances: Sequence[float], count: int, seed: int,
             given: tuple[np.ndarray, np.ndarray] | None = None, pairs: Sequence[tuple[str, str]] | None = None,
             min_cosine: float = 0.25, max_pairs: int = 6, batch_size: int = 256, head: Any = None,
             per_boundary: bool = True, show_progress: bool = True, job: str = "analyze") -> Pipeline:
    """Stages 1-3 into `out`, each resumed from what a killed run left there (the module docstring): samples/
    (`count` codes of `seed`, or the codes and scores `given`), boundaries/ (one per name, then each of `pairs`
    conditioned; None: `analysis.choose_pairs`) and rescoring/ (`fresh` codes edited to `distances`;
    per_boundary: see `rescore`)."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    if given is None:
        write_samples(G, out / "samples", count=count, seed=seed, batch_size=batch_size, image_format="none",
                      predictor=scorer, show_progress=show_progress)
        codes, scores = np.load(out / "samples" / "z.npy"), np.load(out / "samples" / "scores.npy")
    else:
        codes, scores = given
    timings["sample_and_score_s"] = time.perf_counter() - t

    t = time.perf_counter()
    names = list(names)
    labels = list(scorer.labels)
    columns = [labels.index(name) for name in names]
    trained = train_boundaries(codes, scores[:, columns], solver="jax", seed=seed, names=names)
    boundaries = {name: trained.boundaries[k : k + 1] for k, name in enumerate(names)}
    if pairs is None:
        pairs = analysis.choose_pairs(names, analysis.cosine_matrix(trained.boundaries), min_cosine=min_cosine,
                                      max_pairs=max_pairs)
    pairs = list(pairs)
    conditioned = analysis.conditioned(boundaries, pairs)
    boundaries.update((conditioned_name(b, a), conditioned[k : k + 1]) for k, (b, a) in enumerate(pairs))
    (out / "boundaries").mkdir(exist_ok=True)
    for name, b in boundaries.items():
        save_boundary(out / "boundaries" / boundary_file_name(name), b)
    timings["train_boundaries_s"] = time.perf_counter() - t

    t = time.perf_counter()
    edits = rescore(G, out, fresh, boundaries, scorer, distances, per_boundary=per_boundary, head=head,
                    batch_size=batch_size, show_progress=show_progress, desc=f"{job}: re-score edits")[..., columns]
    timings["rescoring_s"] = time.perf_counter() - t
    return Pipeline(codes, scores, names, trained, pairs, boundaries, edits, timings)


def rescore(G: Generator, out: Path, codes: np.ndarray, boundaries: dict[str, np.ndarray], scorer: Predictor,
            distances: Sequence[float], *, per_boundary: bool = True, head: Any = None, batch_size: int = 256,
            show_progress: bool = True, desc: str = "re-score edits") -> np.ndarray:
    """Scores (M, B, S, L) of `codes` moved along each boundary to each distance (absolute mode), kept in
    rescoring/NAME.npy per boundary (written atomically) and read back by a rerun.

    per_boundary: one boundary's edits at a time, so a killed run redoes one boundary. False: every boundary's
    in one pass, so a killed run redoes the pass; the demo's numbers come from that batching (on XLA:CPU a
    score moves in its last bits with its batch mates).
    """
    folder = out / "rescoring"
    folder.mkdir(exist_ok=True)
    shape = (len(codes), len(distances), len(scorer.labels))
    paths = {name: folder / f"{name}.npy" for name in boundaries}
    done = {name: cached for name, path in paths.items()
            if (cached := _read_cached(path)) is not None and cached.shape == shape}
    todo = [name for name in boundaries if name not in done]
    groups = [[name] for name in todo] if per_boundary else [list(boundaries)] if todo else []
    per_name = len(distances) * len(codes)
    progress = Progress(len(boundaries) * per_name, len(done) * per_name, desc=desc, enabled=show_progress)
    for group in groups:
        scores = analysis.edit_scores(G, codes, np.concatenate([boundaries[n] for n in group]), scorer,
                                      distances=distances, batch_size=batch_size, head=head).astype(np.float32)
        for k, name in enumerate(group):
            done[name] = scores[:, k]
            files.atomic_save_npy(paths[name], done[name])
        progress.update(len(group) * per_name)
    progress.close()
    return np.stack([done[name] for name in boundaries], axis=1)


def _read_cached(path: Path) -> np.ndarray | None:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None


def write_grids(G: Generator, out: Path, codes: np.ndarray, names: list[str], stacked: np.ndarray,
                scorer: Predictor, *, distances: Sequence[float], plain: Sequence[str],
                pairs: Sequence[tuple[str, str]], prefix: str, batch_size: int = 256) -> dict[str, str]:
    """Edit grids of `codes` (rows) along the boundaries `names` (rows of `stacked`) at `distances` (columns):
    PREFIX + NAME.png for each of `plain`, and PREFIX + B_c_A.png for each pair (b, a), the primal edit and
    the conditioned one side by side, a blank column between; {name or "b|a": file under out}."""
    _, images = analysis.edit_scores(G, codes, stacked, scorer, distances=distances, batch_size=batch_size,
                                     with_images=True)
    grids = {}
    for name in plain:
        grids[name] = f"{prefix}{name}.png"
        files.save_grid(out / grids[name], images[:, names.index(name)])
    for b, a in pairs:
        key = analysis.pair_name(b, a)
        grids[key] = f"{prefix}{conditioned_name(b, a)}.png"
        files.save_grid(out / grids[key], analyze_report.side_by_side(
            images[:, names.index(b)], images[:, names.index(conditioned_name(b, a))]))
    return grids


def _summary(names, dropped, scores, trained, cosine, ends, pairs, *, identity, codes_path, scores_path,
             chose_pairs, grids) -> dict[str, Any]:
    """analysis.json: every matrix keyed by attribute name."""
    corr = analysis.correlation(scores, names)
    k = len(names)
    delta = analysis.rescoring(ends)  # (B + P, K)
    means = ends.astype(np.float64).mean(axis=0)  # (B + P, 2, K)
    index = {name: i for i, name in enumerate(names)}
    conditional = {}
    for p, (b, a) in enumerate(pairs):
        c = k + p
        conditional[analysis.pair_name(b, a)] = {
            "primal": float(delta[index[b], index[a]]), "conditioned": float(delta[c, index[a]]),
            "cosine": float(cosine[index[b], index[a]]),
            "boundary": "boundaries/" + boundary_file_name(conditioned_name(b, a)),
            "target": {"primal": float(delta[index[b], index[b]]), "conditioned": float(delta[c, index[b]])},
            "means": {"primal": means[index[b], :, index[a]].tolist(), "conditioned": means[c, :, index[a]].tolist()},
        }
    return {
        "model": identity["model"], "predictor": identity["predictor"], "count": identity["count"],
        "seed": identity["seed"], "codes": None if codes_path is None else str(codes_path),
        "scores": None if scores_path is None else str(scores_path),
        "attributes": names, "dropped": {d: f"1 - {kept}" for d, kept in dropped.items()},
        "score_mean": dict(zip(names, scores.mean(axis=0).astype(float).tolist(), strict=True)),
        "score_std": dict(zip(names, scores.std(axis=0).astype(float).tolist(), strict=True)),
        "correlation": _matrix(corr, names, names),
        "boundary_cosine": _matrix(cosine, names, names),
        "val_accuracy": {n: r["accuracy"]["val"] for n, r in zip(names, trained.reports, strict=True)},
        "boundaries": {n: {"file": "boundaries/" + boundary_file_name(n), "accuracy": r["accuracy"],
                           "counts": r["counts"]} for n, r in zip(names, trained.reports, strict=True)},
        "rescore_samples": int(ends.shape[0]), "distance": identity["distance"],
        "rescoring": _matrix(delta[:k], names, names),
        "rescoring_means": {b: {a: means[i, :, j].tolist() for j, a in enumerate(names)}
                            for i, b in enumerate(names)},
        "pairs_chosen_by": chose_pairs, "conditional": conditional, "grids": grids,
    }


def _matrix(m: np.ndarray, rows: list[str], cols: list[str]) -> dict[str, dict[str, float]]:
    return {r: {c: float(m[i, j]) for j, c in enumerate(cols)} for i, r in enumerate(rows)}


def _print_summary(out: Path, s: dict[str, Any]) -> None:
    val = ", ".join(f"{n} {v:.3f}" for n, v in s["val_accuracy"].items() if v is not None)
    print(f"val accuracy: {val}")
    for name in s["attributes"]:
        lo, hi = s["rescoring_means"][name][name]
        print(f"{name} along its boundary: {lo:.3f} -> {hi:.3f} (-{s['distance']:g} -> +{s['distance']:g})")
    for key, c in s["conditional"].items():
        b, a = key.split(analysis.PAIR_SEPARATOR)
        print(f"conditional {key}: {a} changes by {c['primal']:+.3f} along {b}, {c['conditioned']:+.3f} along "
              f"{b} orthogonal to {a}")
    print(f"report: {out / 'report.md'}")

"""`edit`: move codes along boundaries (InterFaceGAN's edit.py), vmapped over samples x boundaries x steps.

Writes codes.npy (N, B, S, ...), images/{sample}_{boundary}_{step}.png, one grid per boundary, edit.json and
meta.json (the run's identity: a folder holds one edit, see jobs/rundir.py).
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ifgan_jax import files, latents
from ifgan_jax.edit import edit_codes
from ifgan_jax.errors import InputError
from ifgan_jax.generator import Generator, load_generator
from ifgan_jax.jobs import rundir
from ifgan_jax.progress import Progress
from ifgan_jax.zoo.registry import DEFAULT_MODEL

MAX_STEPS = 1000  # distances per boundary: a grid row of 1000 images is already past any use
PARTIAL_CODES = ".codes.partial.npy"
EDIT_IMAGES = "images/" + "[0-9]" * 6 + "*_[0-9]*_[0-9]*.png"  # edit_image_name's files: only these go with --overwrite
OUTPUT_NAMES = (rundir.META_FILE, rundir.PROGRESS_FILE, "codes.npy", PARTIAL_CODES, EDIT_IMAGES, "images",
                "grid_[0-9][0-9]*.png", "edit.json")
GRID_STEM_BYTES = 100  # a boundary's file stem in its grid's name is cut to this (the name must fit NAME_MAX)


def run(out_dir: str | Path, *, boundary_paths: list[str], model: str = DEFAULT_MODEL, weights: str | None = None,
        codes_path: str | None = None, num: int | None = None, seed: int = 0, space: str = "z",
        start_distance: float = -3.0, end_distance: float = 3.0, steps: int = 10, mode: str = "absolute",
        layers: str | None = None, truncation_aware: bool = False, write_images: bool = True, overwrite: bool = False,
        show_progress: bool = True, devices: int | None = None, micro_batch: int | None = None,
        noise_mode: str | None = None) -> dict[str, Any]:
    """The `edit` command: load the model, boundaries and codes, check them, edit, print a summary line."""
    if codes_path is None and num is None:
        raise InputError("give -i CODES.npy or -n N")
    if num is not None and num < 1:
        raise InputError(f"-n must be >= 1, got {num}")
    latents.check_seed(seed, "--seed")
    if not 1 <= steps <= MAX_STEPS:
        raise InputError(f"--steps must be in [1, {MAX_STEPS}], got {steps}")
    files.check_writable(files.output_path(out_dir, "-o"), "output folder")
    boundaries = [files.load_npy(path, "boundary") for path in boundary_paths]
    G = load_generator(model, weights=weights, micro_batch=micro_batch, devices=devices)
    names = [Path(p).name for p in boundary_paths]
    bounds = check_boundaries(G, boundaries, space, names)
    if codes_path is None and space != "z" and not G.has_mapping:
        raise InputError(f"{G.name} has only Z codes; -s {space} needs a model with a mapping network")
    codes = files.load_npy(codes_path, "codes") if codes_path else sampled_codes(G, seed, num, space)
    layer_ids = parse_layers(layers, G.num_layers)
    if layer_ids is not None and space != "wp":
        raise InputError("--layers applies to W+ codes (--space wp)")
    strength = None
    if truncation_aware:
        if space != "wp":
            raise InputError("--truncation-aware applies to W+ codes (--space wp)")
        strength = G.truncation_profile()
    result = write_edits(G, np.asarray(codes), bounds, out_dir, names=names, space=space,
                         start_distance=start_distance, end_distance=end_distance, steps=steps, mode=mode,
                         layers=layer_ids, layer_strength=strength, write_images=write_images,
                         overwrite=overwrite, show_progress=show_progress, noise_mode=noise_mode, seed=seed)
    if not result["skipped"]:
        print(f"wrote {result['count']} edited images to {result['out_dir']} ({result['rate']:.1f} img/s)")
    return result


def parse_layers(text: str | None, num_layers: int) -> tuple[int, ...] | None:
    """'0-7' or '0,2,4' -> layer indices (validated against the model's W+ layers)."""
    if not text:
        return None
    spans: list[tuple[int, int]] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            spans.append((int(lo), int(hi or lo)))
    except ValueError:
        raise InputError(f"--layers must look like 0-7 or 0,2,4, got {text[:80]!r}") from None
    if not num_layers:
        raise InputError("--layers needs a model with W+ codes")
    # Ranges are checked as ranges: '0-20000000' must not expand into 20 million numbers first.
    bad = [f"{lo}-{hi}" if hi != lo else str(lo) for lo, hi in spans if not 0 <= lo <= hi < num_layers]
    if bad:
        shown = ", ".join(bad[:5]) + (f", ... ({len(bad)} in all)" if len(bad) > 5 else "")
        raise InputError(f"--layers [{shown}] out of range for {num_layers} W+ layers")
    return tuple(sorted({i for lo, hi in spans for i in range(lo, hi + 1)}))


def edit_image_name(sample: int, boundary: int, step: int) -> str:
    """`{sample:06d}_{boundary:02d}_{step:03d}.png`."""
    return f"{sample:06d}_{boundary:02d}_{step:03d}.png"


@functools.partial(jax.jit, static_argnames=("mode", "layers"))
def _edit(codes, boundaries, distances, layer_strength, *, mode, layers):
    return edit_codes(codes, boundaries, distances, mode=mode, layers=layers, layer_strength=layer_strength)


def check_boundaries(G: Generator, boundaries: list[np.ndarray], space: str, names: list[str]) -> np.ndarray:
    """Stack (1, d) boundaries into (B, d) float32, checking dimension, finiteness and norm."""
    dim = G.latent_dim
    rows = []
    for name, b in zip(names, boundaries, strict=True):
        b = np.asarray(b, dtype=np.float64)
        if b.ndim == 2 and b.shape[0] == 1:
            b = b[0]
        if b.ndim != 1 or b.shape[0] != dim:
            raise InputError(f"boundary {name} has shape {np.shape(b)}, but {G.name} {space} codes have dim {dim}")
        norm = np.linalg.norm(b)
        if not np.isfinite(b).all() or norm < 1e-8:
            raise InputError(f"boundary {name} is zero or not finite")
        rows.append(b / norm)
    return np.stack(rows).astype(np.float32)


def write_edits(
    G: Generator,
    codes: np.ndarray,
    boundaries: np.ndarray,
    out_dir: str | Path,
    *,
    names: list[str],
    space: str = "z",
    start_distance: float = -3.0,
    end_distance: float = 3.0,
    steps: int = 10,
    mode: str = "absolute",
    layers: tuple[int, ...] | None = None,
    layer_strength: np.ndarray | None = None,
    write_images: bool = True,
    grid_samples: int = 8,
    chunk: int = 64,
    overwrite: bool = False,
    show_progress: bool = True,
    noise_mode: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Edit every code along every boundary; write codes.npy (N, B, S, ...), PNGs, grids and edit.json.

    noise_mode 'random': every edit of code i gets the noise `sample --seed seed` draws for index i, so only
    the edit changes its images.

    The folder follows jobs/rundir.py: meta.json names the run, so rerunning it is a no-op (or finishes a killed
    one) and a folder holding another edit is refused unless `overwrite` replaces it; never a mix of both.
    """
    if len(codes) == 0:
        raise InputError("there are no codes to edit")
    codes = G.check_codes(codes, space)
    G.check_noise_mode(noise_mode)
    if not 1 <= steps <= MAX_STEPS:
        raise InputError(f"--steps must be in [1, {MAX_STEPS}], got {steps}")
    if mode not in ("absolute", "relative"):
        raise InputError(f"mode must be absolute or relative, got {mode!r}")
    out = files.output_path(out_dir, "-o")
    n, b = len(codes), len(boundaries)
    codes_size = n * b * steps * int(np.prod(codes.shape[1:])) * 4
    files.require_space(out, codes_size - files.allocated_bytes(out / "codes.npy"), "codes.npy")
    distances = jnp.linspace(start_distance, end_distance, steps, dtype=jnp.float32)
    strength = None if layer_strength is None else jnp.asarray(layer_strength, jnp.float32)
    identity = {
        "job": "edit", "model": G.name, "space": space, "mode": mode, "boundaries": list(names),
        "codes_sha256": _sha256(codes), "boundaries_sha256": _sha256(np.asarray(boundaries, np.float32)),
        "distances": np.asarray(distances).tolist(), "layers": None if layers is None else list(layers),
        "layer_strength": None if layer_strength is None else np.asarray(layer_strength, np.float32).tolist(),
        "write_images": bool(write_images), "grid_samples": int(grid_samples),
    }
    if noise_mode is not None:  # only when given: a default run's meta.json stays as it was
        identity.update(noise_mode=noise_mode, noise_seed=latents.check_seed(seed) if noise_mode == "random" else None)
    if rundir.start_run(out, identity, OUTPUT_NAMES, overwrite) is None:
        return {"out_dir": str(out), "count": n * b * steps, "skipped": True}
    codes_out = files.open_npy(out / PARTIAL_CODES, (n, b, steps, *codes.shape[1:]), np.float32, resume=False)
    if write_images:
        (out / "images").mkdir(exist_ok=True)
    h = G.resolution
    grid = np.zeros((b, min(grid_samples, n), steps, h, h, 3), np.uint8)
    progress = Progress(n * b * steps, desc=f"edit {G.name}", enabled=show_progress)
    bound = jnp.asarray(boundaries)
    with files.PngWriter() as writer:
        futures = []
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            edited = _edit(jnp.asarray(codes[start:stop]), bound, distances, strength, mode=mode, layers=layers)
            flat = edited.reshape(-1, *codes.shape[1:])
            noise = {"noise_mode": noise_mode}
            if noise_mode == "random":  # sample s's noise for all of its edits
                keys = latents.noise_keys(seed, start, stop - start)
                noise["key"] = keys[np.repeat(np.arange(stop - start), b * steps)]
            images = np.asarray(G.synthesize_uint8(flat, space, **noise)).reshape(stop - start, b, steps, h, h, 3)
            codes_out[start:stop] = np.asarray(edited)
            files.flush_npy(codes_out)  # keeps the RSS bounded however many codes the edit writes
            for i in range(start, min(stop, grid.shape[1])):
                grid[:, i] = images[i - start]
            if write_images:
                paths = [out / "images" / edit_image_name(s, k, t)
                         for s in range(start, stop) for k in range(b) for t in range(steps)]
                futures.append(writer.submit(paths, images.reshape(-1, h, h, 3)))
            progress.update((stop - start) * b * steps)
        for future in futures:
            future.result()
    progress.close()
    codes_out.flush()
    del codes_out
    (out / PARTIAL_CODES).replace(out / "codes.npy")
    grids = []
    for k, name in enumerate(names):
        path = out / f"grid_{k:02d}_{_safe(name)}.png"
        files.save_grid(path, grid[k])
        grids.append(path.name)
    files.atomic_write_json(out / "edit.json", {
        "model": G.name, "space": space, "boundaries": names, "distances": np.asarray(distances).tolist(),
        "mode": mode, "layers": None if layers is None else list(layers), "count": n, "grids": grids,
    })
    rundir.finish_run(out, identity)
    return {"out_dir": str(out), "count": n * b * steps, "rate": progress.rate, "grids": grids, "skipped": False}


def _safe(name: str) -> str:
    """A boundary file's stem as it appears in a grid's file name: safe characters, at most GRID_STEM_BYTES."""
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(name).stem)
    return os.fsencode(stem)[:GRID_STEM_BYTES].decode(errors="ignore")  # cut on a character boundary


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def sampled_codes(G: Generator, seed: int, num: int, space: str) -> np.ndarray:
    """The first `num` codes of `seed` in `space`: Z rows mapped (and truncated for W+), the very rows
    `sample --seed S` writes to z.npy / w.npy / wp.npy (InterFaceGAN's `edit.py -n N -s W`)."""
    return G.codes_from_z(G.sample_latents(seed, 0, num), space)

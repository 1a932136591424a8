"""Edit jobs: codes x boundaries x distances -> edited codes, images and one grid per boundary."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ifgan_jax import files
from ifgan_jax.edit import edit_codes
from ifgan_jax.errors import InputError
from ifgan_jax.generator import Generator
from ifgan_jax.progress import Progress


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


def run_edit(
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
    show_progress: bool = True,
) -> dict[str, Any]:
    """Edit every code along every boundary; write codes.npy (N, B, S, ...), PNGs and grids."""
    codes = G.check_codes(codes, space)
    if steps < 1:
        raise InputError(f"--steps must be >= 1, got {steps}")
    if mode not in ("absolute", "relative"):
        raise InputError(f"mode must be absolute or relative, got {mode!r}")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create {out}: {err.strerror or err}") from None
    n, b = len(codes), len(boundaries)
    distances = jnp.linspace(start_distance, end_distance, steps, dtype=jnp.float32)
    strength = None if layer_strength is None else jnp.asarray(layer_strength, jnp.float32)
    codes_out = files.open_npy(out / ".codes.partial.npy", (n, b, steps, *codes.shape[1:]), np.float32, resume=False)
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
            images = np.asarray(G.synthesize_uint8(flat, space)).reshape(stop - start, b, steps, h, h, 3)
            codes_out[start:stop] = np.asarray(edited)
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
    (out / ".codes.partial.npy").replace(out / "codes.npy")
    grids = []
    for k, name in enumerate(names):
        path = out / f"grid_{k:02d}_{_safe(name)}.png"
        files.save_grid(path, grid[k])
        grids.append(path.name)
    files.atomic_write_json(out / "edit.json", {
        "model": G.name, "space": space, "boundaries": names, "distances": np.asarray(distances).tolist(),
        "mode": mode, "layers": None if layers is None else list(layers), "count": n, "grids": grids,
    })
    return {"out_dir": str(out), "count": n * b * steps, "rate": progress.rate, "grids": grids}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(name).stem)

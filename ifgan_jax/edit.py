"""Latent-code editing along semantic boundaries (InterFaceGAN's `linear_interpolate`), as one vmapped op.

Semantics, with n the boundary scaled to unit length and D one of the distances:

* codes (N, d), mode "absolute": x' = x - (n.x) n + D n, so n.x' = D exactly (InterFaceGAN's default);
* codes (N, d), mode "relative": x' = x + D n;
* W+ codes (N, L, d) with a (B, d) boundary: every edited layer moves by D n (InterFaceGAN shifts W+ codes
  relatively in both modes); `layers` picks the layers, `layer_strength` (L,) scales each layer's shift;
* W+ codes (N, L, d) with a (B, L*d) boundary (one trained on flattened W+ codes): the same two modes in the
  flattened space, with `layers` / `layer_strength` scaling each layer's part of the shift.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ifgan_jax.errors import InputError

__all__ = ["MODES", "edit_codes", "interpolation_distances", "linear_interpolate"]

MODES = ("absolute", "relative")


def interpolation_distances(start: float = -3.0, end: float = 3.0, steps: int = 10) -> np.ndarray:
    """InterFaceGAN's edit distances: `steps` values from `start` to `end`, float32."""
    if steps < 1:
        raise InputError(f"steps must be >= 1, got {steps}")
    return np.linspace(start, end, steps).astype(np.float32)


def _concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_values(codes: Any, boundaries: Any, distances: Any) -> None:
    """Value checks that need concrete arrays; skipped under jit, where they cannot raise."""
    if _concrete(codes) and not bool(np.isfinite(np.asarray(codes)).all()):
        raise InputError("codes contain NaN or infinite values")
    if _concrete(distances) and not bool(np.isfinite(np.asarray(distances)).all()):
        raise InputError("distances contain NaN or infinite values")
    if _concrete(boundaries):
        b = np.asarray(boundaries, dtype=np.float64)
        if not np.isfinite(b).all():
            raise InputError("boundaries contain NaN or infinite values")
        norms = np.linalg.norm(b.reshape(b.shape[0], -1), axis=1)
        if (norms == 0).any():
            raise InputError(f"boundary {int(np.flatnonzero(norms == 0)[0])} is all zeros")


def _layer_gain(num_layers: int, layers: Sequence[int] | None, layer_strength: Any, dtype: Any) -> jax.Array:
    gain = jnp.ones((num_layers,), dtype)
    if layers is not None:
        chosen = []
        for layer in layers:
            if not isinstance(layer, (int, np.integer)) or not -num_layers <= int(layer) < num_layers:
                raise InputError(f"layers must be integers in [0, {num_layers}), got {layer!r}")
            chosen.append(int(layer) % num_layers)
        if not chosen:
            raise InputError("layers is empty; pass None to edit every layer")
        gain = jnp.zeros((num_layers,), dtype).at[jnp.asarray(chosen)].set(1.0)
    if layer_strength is not None:
        strength = jnp.asarray(layer_strength, dtype)
        if strength.ndim == 0:
            strength = jnp.broadcast_to(strength, (num_layers,))
        if strength.shape != (num_layers,):
            raise InputError(f"layer_strength must be a scalar or have shape ({num_layers},), "
                             f"got {tuple(strength.shape)}")
        gain = gain * strength
    return gain


def edit_codes(
    codes: Any,
    boundaries: Any,
    distances: Any,
    mode: str = "absolute",
    layers: Sequence[int] | None = None,
    layer_strength: Any = None,
) -> jax.Array:
    """Edit every code along every boundary to every distance: (N, B, S, d) or W+ (N, B, S, L, d).

    `codes` (N, d) or (N, L, d); `boundaries` (B, d), (d,), or for W+ codes (B, L*d); `distances` (S,).
    Boundaries are scaled to unit length (InterFaceGAN assumes unit normals). Works under jit (`layers`
    must then be static); NaN/zero checks run only on concrete inputs.
    """
    if mode not in MODES:
        raise InputError(f"mode must be one of {MODES}, got {mode!r}")
    x = jnp.asarray(codes)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    b = jnp.asarray(boundaries, x.dtype)
    dist = jnp.asarray(distances, x.dtype)
    if x.ndim not in (2, 3) or x.shape[0] < 1:
        raise InputError(f"codes must have shape (N, d) or W+ (N, L, d), got {tuple(x.shape)}")
    if b.ndim == 1:
        b = b[None]
    if dist.ndim == 0:
        dist = dist[None]
    if dist.ndim != 1 or dist.shape[0] < 1:
        raise InputError(f"distances must have shape (S,), got {tuple(dist.shape)}")
    wplus = x.ndim == 3
    num_layers, dim = (x.shape[1], x.shape[2]) if wplus else (1, x.shape[1])
    if b.ndim != 2 or b.shape[0] < 1:
        raise InputError(f"boundaries must have shape (B, d) or (d,), got {tuple(np.shape(boundaries))}")
    if b.shape[1] == dim:
        per_layer = False  # one direction shared by every layer (or plain 2-D codes)
    elif wplus and b.shape[1] == num_layers * dim:
        per_layer = True  # a boundary over flattened W+ codes
    else:
        want = f"{dim}" + (f" or {num_layers * dim} (flattened W+)" if wplus else "")
        raise InputError(f"boundaries have dim {b.shape[1]}, codes {tuple(x.shape)} need {want}")
    if not wplus and (layers is not None or layer_strength is not None):
        raise InputError("layers / layer_strength apply to W+ codes (N, L, d) only")
    _check_values(codes, boundaries, distances)

    gain = _layer_gain(num_layers, layers, layer_strength, x.dtype)[:, None]  # (L, 1)
    n = b / jnp.linalg.norm(b, axis=1, keepdims=True)
    n = n.reshape(-1, num_layers, dim) if per_layer else n[:, None, :]  # (B, L or 1, d)
    x3 = x if wplus else x[:, None, :]  # (N, L, d)
    # InterFaceGAN moves W+ codes relatively even in its default mode: only 2-D codes and flattened-W+
    # boundaries have a single hyperplane distance to set.
    absolute = mode == "absolute" and (per_layer or not wplus)

    def one(code: jax.Array, normal: jax.Array, d: jax.Array) -> jax.Array:
        shift = d - jnp.sum(normal * code) if absolute else d
        return code + gain * shift * normal

    over_steps = jax.vmap(one, in_axes=(None, None, 0))
    over_bounds = jax.vmap(over_steps, in_axes=(None, 0, None))
    out = jax.vmap(over_bounds, in_axes=(0, None, None))(x3, n, dist)  # (N, B, S, L, d)
    return out if wplus else out[:, :, :, 0, :]


def linear_interpolate(
    latent_code: Any, boundary: Any, start_distance: float = -3.0, end_distance: float = 3.0, steps: int = 10
) -> np.ndarray:
    """InterFaceGAN's `linear_interpolate`: one code (1, d) or (1, L, d) -> (steps, d) or (steps, L, d)."""
    code = np.asarray(latent_code)
    if code.ndim not in (2, 3) or code.shape[0] != 1:
        raise InputError(f"latent_code must have shape (1, d) or (1, L, d), got {code.shape}")
    b = np.asarray(boundary)
    if b.ndim != 2 or b.shape[0] != 1 or b.shape[1] != code.shape[-1]:
        raise InputError(f"boundary must have shape (1, {code.shape[-1]}), got {b.shape}")
    out = edit_codes(code, b, interpolation_distances(start_distance, end_distance, steps), mode="absolute")
    return np.asarray(out[0, 0])

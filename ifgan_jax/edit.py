"""Linear edits along boundaries (InterFaceGAN's linear_interpolate), vmapped over samples x boundaries x steps."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

MODES = ("absolute", "relative")


def move_code(code: jax.Array, boundary: jax.Array, distance: jax.Array, *, mode: str,
              layers: Sequence[int] | None = None, layer_strength: jax.Array | None = None) -> jax.Array:
    """One code (d,) or W+ code (L, d) moved along one unit boundary (d,) by one distance.

    absolute (2-D codes): the result sits at signed distance `distance` from the hyperplane (n.x' = distance);
    W+ codes and relative mode shift by `distance * n` (InterFaceGAN broadcasts over layers).
    """
    if code.ndim == 1:
        if mode == "absolute":
            return code + (distance - code @ boundary) * boundary
        return code + distance * boundary
    scale = jnp.ones((code.shape[0],), code.dtype)
    if layers is not None:
        scale = jnp.zeros_like(scale).at[jnp.asarray(layers)].set(1.0)
    if layer_strength is not None:
        scale = scale * layer_strength
    return code + distance * scale[:, None] * boundary[None, :]


def edit_codes(codes: jax.Array, boundaries: jax.Array, distances: jax.Array, *, mode: str = "absolute",
               layers: Sequence[int] | None = None, layer_strength: jax.Array | None = None) -> jax.Array:
    """Codes (N, ...) x unit boundaries (B, d) x distances (S,) -> edited codes (N, B, S, ...)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    layers = None if layers is None else tuple(layers)

    def one(code, boundary, distance):
        return move_code(code, boundary, distance, mode=mode, layers=layers, layer_strength=layer_strength)

    over_steps = jax.vmap(one, in_axes=(None, None, 0))
    over_boundaries = jax.vmap(over_steps, in_axes=(None, 0, None))
    return jax.vmap(over_boundaries, in_axes=(0, None, None))(codes, boundaries, distances)

"""Image statistics as predictors: brightness, contrast, saturation (no weights)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

STATS_LABELS = ("brightness", "contrast", "saturation")
# ITU-R BT.601 luma weights, the same OpenCV uses for RGB -> gray.
LUMA = (0.299, 0.587, 0.114)


def _luma(images: jax.Array) -> jax.Array:
    rgb = jnp.clip((images + 1.0) * 0.5, 0.0, 1.0)
    return rgb @ jnp.asarray(LUMA, jnp.float32)


def brightness(images: jax.Array) -> jax.Array:
    """Mean luma in [0, 1] per image, shape (N, 1)."""
    return jnp.mean(_luma(images), axis=(1, 2))[:, None]


def image_stats(images: jax.Array) -> jax.Array:
    """(N, 3): brightness (mean luma), contrast (std of luma) and saturation (mean HSV S), all in [0, 1]."""
    luma = _luma(images)
    rgb = jnp.clip((images + 1.0) * 0.5, 0.0, 1.0)
    hi, lo = jnp.max(rgb, axis=-1), jnp.min(rgb, axis=-1)
    # HSV saturation is undefined for black pixels; count them as unsaturated.
    saturation = jnp.where(hi > 0, (hi - lo) / jnp.where(hi > 0, hi, 1.0), 0.0)
    return jnp.stack([jnp.mean(luma, (1, 2)), jnp.std(luma, (1, 2)), jnp.mean(saturation, (1, 2))], axis=1)

"""The objectives of inversion and encoder training, composed here once: pixel MSE, LPIPS, noise regularizer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from ifgan_jax.models.vgg16 import lpips_distance, lpips_features

LOSSES = ("mse", "lpips", "mse+lpips")
NOISE_REGULARIZER_MIN_SIZE = 8  # NVlabs' projector stops down-sampling a noise map at 8 x 8


def image_loss(recon: jax.Array, targets: jax.Array, *, mse: bool = True, lpips_weight: float | None = None,
               vgg: Any = None, target_features: list | None = None) -> jax.Array:
    """Per-image loss (N,): mean squared error of raw [-1, 1] images (when `mse`) plus lpips_weight x LPIPS
    (when lpips_weight is not None; `vgg` holds the VGG16 params, target_features the targets' own features
    when a caller computes them once for many steps)."""
    total = jnp.zeros((recon.shape[0],), jnp.float32)
    if mse:
        total += jnp.mean(jnp.square(recon - targets), axis=(1, 2, 3))
    if lpips_weight is not None:
        feats = lpips_features(vgg, targets) if target_features is None else target_features
        total += lpips_weight * lpips_distance(vgg, lpips_features(vgg, recon), feats)
    return total


def uses_lpips(loss: str | Callable) -> bool:
    return isinstance(loss, str) and "lpips" in loss


def inversion_loss(loss: str | Callable, perceptual_weight: float, recon: jax.Array, targets: jax.Array,
                   vgg: Any = None, target_features: list | None = None) -> jax.Array:
    """An inversion plan's data term: a callable `loss(recon, targets)`, or one of LOSSES ('mse+lpips'
    weighs LPIPS by perceptual_weight; 'lpips' alone has weight 1)."""
    if callable(loss):
        return loss(recon, targets)
    with_mse = "mse" in loss
    weight = (perceptual_weight if with_mse else 1.0) if uses_lpips(loss) else None
    return image_loss(recon, targets, mse=with_mse, lpips_weight=weight, vgg=vgg, target_features=target_features)


def clipped_mse(recon: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-image MSE of the reconstruction clipped to [-1, 1] (what PSNR is reported from)."""
    return jnp.mean(jnp.square(jnp.clip(recon, -1.0, 1.0) - targets), axis=(1, 2, 3))


def noise_regularizer(maps: dict[str, jax.Array]) -> jax.Array:
    """NVlabs' multiscale noise regularizer of one image: squared autocorrelation at 1 px, per octave."""
    total = jnp.float32(0.0)
    for m in maps.values():
        x = m
        while True:
            total += jnp.mean(x * jnp.roll(x, 1, axis=1)) ** 2 + jnp.mean(x * jnp.roll(x, 1, axis=0)) ** 2
            if x.shape[0] <= NOISE_REGULARIZER_MIN_SIZE:
                break
            h, w = x.shape
            x = x.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    return total

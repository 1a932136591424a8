"""VGG16 features and the LPIPS distance (Zhang et al. 2018) over a params pytree, for the perceptual loss.

Pure functions of `params = {"conv": [(kernel (3, 3, in, out) HWIO, bias (out,)), ...13], "lin": [(C,), ...5]
or []}`, read from torchvision / LPIPS files by converters/vgg16.py. Images are NHWC in [-1, 1].
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)  # torchvision `vgg16().features` indices
POOL_AFTER = (1, 3, 6, 9)  # conv positions followed by 2x2 max-pooling (the fifth pool is never used)
TAPS = (1, 3, 6, 9, 12)  # LPIPS taps: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
# LPIPS' ScalingLayer: inputs in [-1, 1] -> the ImageNet normalization VGG16 was trained with.
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
MAX_RESOLUTION = 256  # larger images are area-downsampled first, as NVlabs' projector
MIN_RESOLUTION = 16  # below this the fourth pooling leaves no pixels for relu5_3


@dataclasses.dataclass(frozen=True, eq=False)
class VGG16:
    """Converted VGG16 conv weights (HWIO) and optional LPIPS linear heads, for the perceptual loss."""

    params: dict  # {"conv": [(kernel (3, 3, in, out), bias (out,)), ...13], "lin": [(C,), ...5] or []}
    source: str

    @property
    def has_lin(self) -> bool:
        return bool(self.params["lin"])


def vgg16_features(params: dict, images: jax.Array) -> list[jax.Array]:
    """LPIPS' five VGG16 feature maps (after ReLU) of [-1, 1] NHWC images."""
    shift = jnp.asarray(LPIPS_SHIFT, jnp.float32)
    scale = jnp.asarray(LPIPS_SCALE, jnp.float32)
    x = (images - shift) / scale
    feats = []
    for pos, (kernel, bias) in enumerate(params["conv"]):
        x = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        x = jax.nn.relu(x + bias)
        if pos in TAPS:
            feats.append(x)
        if pos in POOL_AFTER:
            x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    return feats


def unit_channels(feat: jax.Array) -> jax.Array:
    """LPIPS' normalize_tensor: unit length over channels at every pixel (eps as LPIPS)."""
    return feat / (jnp.sqrt(jnp.sum(feat * feat, axis=-1, keepdims=True)) + 1e-10)


def lpips_features(params: dict, images: jax.Array) -> list[jax.Array]:
    """Channel-normalized VGG16 features (images larger than 256 px are area-downsampled first)."""
    if images.shape[1] > MAX_RESOLUTION:
        images = area_downsample(images, MAX_RESOLUTION)
    return [unit_channels(f) for f in vgg16_features(params, images)]


def lpips_distance(params: dict, feats_a: list[jax.Array], feats_b: list[jax.Array]) -> jax.Array:
    """Per-image LPIPS-style distance (N,): per layer, head-weighted squared differences, spatial mean."""
    total = 0.0
    for k, (fa, fb) in enumerate(zip(feats_a, feats_b, strict=True)):
        d = jnp.square(fa - fb)
        d = d * params["lin"][k] if params["lin"] else d  # without heads: the plain channel sum
        total = total + jnp.mean(jnp.sum(d, axis=-1), axis=(1, 2))
    return total


def area_downsample(images: jax.Array, size: int) -> jax.Array:
    """NHWC square images to `size` px by averaging whole blocks (the side must be a multiple of `size`)."""
    n, h, w, c = images.shape
    if h == size:
        return images
    f = h // size
    return images.reshape(n, size, f, size, f, c).mean(axis=(2, 4))


__all__ = ["VGG16", "area_downsample", "lpips_distance", "lpips_features", "unit_channels", "vgg16_features"]

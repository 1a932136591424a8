"""InterFaceGAN's PGGAN generator (`models/pggan_generator_model.py`) as flax.nnx, NHWC.

Module and attribute names mirror InterFaceGAN's state-dict names (`layer{i}`, `output{k}`, `lod`) so the
converter's key mapping reads like a table. Each `ConvBlock` runs, like InterFaceGAN's: pixel norm ->
(nearest 2x upsampling) -> conv -> equalized-lr scale on the output -> + bias -> leaky ReLU 0.2.

The layers shared with StyleGAN (pixel norm, the up-sampling convolution, the channel table) live in
`layers.py`. The `lod` buffer (level of detail) is carried for fidelity but not used: released
models are fully grown (lod 0) and the converter refuses any other value.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from ifgan_jax.models.base import Architecture
from ifgan_jax.models.layers import (
    CONV_GAIN,
    Buffer,
    channels_at,
    check_resolution,
    conv2d,
    fused_up_kernel,
    lrelu,
    nearest_up_kernel,
    pixel_norm,
    upsample_conv,
)
from ifgan_jax.models.layers import RESOLUTIONS as RESOLUTIONS  # re-exported: PGGAN's supported sizes
from ifgan_jax.models.nnx_bind import bind

RGB_GAIN = 1.0  # ToRGB is linear
FIRST_SIZE = 4  # layer0 turns the 1x1 latent into 4x4 (a 4x4 conv with padding 3)


@dataclasses.dataclass(frozen=True)
class Config:
    """PGGAN generator architecture (InterFaceGAN's `PGGANGeneratorModel` arguments)."""

    resolution: int = 1024
    latent_dim: int = 512
    fused_scale: bool = False  # InterFaceGAN's released PGGAN uses upsample + conv (False)
    output_channels: int = 3

    def __post_init__(self) -> None:
        check_resolution(self.resolution)
        if not isinstance(self.fused_scale, bool):
            raise ValueError(f"PGGAN fused_scale must be true or false, got {self.fused_scale!r}")

    @property
    def num_blocks(self) -> int:
        """Resolution blocks 4x4 ... resolution (two conv layers and one ToRGB each)."""
        return check_resolution(self.resolution) - 1

    def block_channels(self, block: int) -> int:
        """Output channels of block `block` (1-based; block b runs at 2**(b+1))."""
        return channels_at(2 ** (block + 1))


# -- modules -----------------------------------------------------------------------------------------


class ConvBlock(nnx.Module):
    """InterFaceGAN's PGGAN `ConvBlock`: pixel norm, [upsample], conv, wscale (x * scale + bias), act.

    `kind`: 'first' (4x4 conv, padding 3, on the 1x1 latent), 'conv' (3x3), 'up' (nearest 2x + 3x3),
    'fused_up' (fused transposed conv) or 'rgb' (1x1, linear).
    """

    def __init__(self, in_channels: int, out_channels: int, kind: str):
        ksize = {"first": FIRST_SIZE, "rgb": 1}.get(kind, 3)
        # The weight is HWIO; InterFaceGAN's fused layers store (k, k, in, out) too.
        self.weight = nnx.Param(jnp.zeros((ksize, ksize, in_channels, out_channels)))
        self.bias = nnx.Param(jnp.zeros((out_channels,)))
        gain = RGB_GAIN if kind == "rgb" else CONV_GAIN
        self.scale = gain / math.sqrt(in_channels * ksize * ksize)  # equalized learning rate
        self.kind = kind

    def __call__(self, x: jax.Array) -> jax.Array:
        x = pixel_norm(x)  # before the (nearest) upsampling: they commute, and it is 4x cheaper
        w = self.weight[...]
        if self.kind == "first":
            # Padding 3 around a 1x1 input: output pixel (i, j) sees kernel tap (3 - i, 3 - j); the
            # converter stores the kernel already flipped, so this is a dense layer to 4x4xC.
            x = jnp.einsum("nc,hwco->nhwo", x, w)
        elif self.kind == "up":
            x = upsample_conv(x, nearest_up_kernel(w))
        elif self.kind == "fused_up":
            # InterFaceGAN scales the kernel, convolves, then divides by the scale before wscale.
            x = upsample_conv(x, fused_up_kernel(w * self.scale)) / self.scale
        else:
            x = conv2d(x, w)
        x = x * self.scale + self.bias[...]
        return x if self.kind == "rgb" else lrelu(x)


class PGGANGenerator(nnx.Module):
    """z (N, latent_dim), already pixel-normalizable -> image (N, R, R, 3), raw output (about [-1, 1])."""

    def __init__(self, config: Config):
        self.config = config
        in_ch = config.latent_dim
        for block in range(1, config.num_blocks + 1):
            out_ch = config.block_channels(block)
            if block == 1:
                first = ConvBlock(in_ch, out_ch, "first")
            else:
                first = ConvBlock(in_ch, out_ch, "fused_up" if config.fused_scale else "up")
            setattr(self, f"layer{2 * block - 2}", first)
            setattr(self, f"layer{2 * block - 1}", ConvBlock(out_ch, out_ch, "conv"))
            setattr(self, f"output{block - 1}", ConvBlock(out_ch, config.output_channels, "rgb"))
            in_ch = out_ch
        # Level of detail: 0 in every released model; the converter rejects other values.
        self.lod = Buffer(jnp.zeros(()))

    def __call__(self, z: jax.Array) -> jax.Array:
        x = z
        for block in range(1, self.config.num_blocks + 1):
            x = getattr(self, f"layer{2 * block - 2}")(x)
            x = getattr(self, f"layer{2 * block - 1}")(x)
        # Only the last ToRGB contributes at lod 0 (InterFaceGAN computes and discards the others).
        return getattr(self, f"output{self.config.num_blocks - 1}")(x)


def architecture(config: Config) -> Architecture:
    """PGGAN as pure functions for `Generator` (Z space only; z is normalized by the caller)."""
    bound = bind(lambda rngs: PGGANGenerator(config))

    def synthesize(params, buffers, codes, space, key=None, noise_mode=None):
        del key, noise_mode  # PGGAN has no noise inputs
        if space != "z":
            raise ValueError(f"PGGAN has only a Z space, not {space!r}")
        # The 2-D z is pixel-normalized over its channels by layer0, as InterFaceGAN's view(N, C, 1, 1).
        return bound.apply(params, buffers, lambda m, z: m(z), codes)

    return Architecture(
        family="pggan",
        resolution=config.resolution,
        latent_dim=config.latent_dim,
        spaces=("z",),
        num_layers=0,
        normalize_z=True,
        synthesize=synthesize,
    )


def param_shapes(config: Config) -> tuple[dict, dict]:
    """Expected (params, buffers) shapes as pure dicts of ShapeDtypeStruct."""
    return bind(lambda rngs: PGGANGenerator(config)).shapes()

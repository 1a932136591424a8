"""InterFaceGAN's StyleGAN generator (`models/stylegan_generator_model.py`) as flax.nnx, NHWC.

Module and attribute names mirror InterFaceGAN's state dict (`mapping.dense{i}`, `truncation.w_avg`,
`synthesis.layer{i}.epilogue.{apply_noise,style_mod}`, `synthesis.output{k}`), so the converter's key
mapping reads like a table. Pytree layout:

- params: `mapping/dense{i}/{weight (in, out), bias}`, `synthesis/layer0/const (4, 4, C)`,
  `synthesis/layer{i}/weight (3, 3, in, out)` for i >= 1, `synthesis/layer{i}/epilogue/{bias,
  apply_noise/weight, style_mod/{weight, bias}}`, `synthesis/output{k}/{weight (1, 1, C, 3), bias}`.
- buffers: `truncation/w_avg (d,)`, `synthesis/lod ()`, and the fixed per-layer noise
  `synthesis/layer{i}/epilogue/apply_noise/noise (R, R)` (a leading batch axis (N, R, R) also works,
  e.g. for per-image noise optimized by inversion).

Noise (`Config.noise_mode`): 'const' adds the stored noise (InterFaceGAN's `randomize_noise=False`),
'random' draws fresh noise from the `key` given to `synthesize` (per image and per layer), 'none' adds none.
As in PGGAN, the `lod` buffer is carried but unused (the converter accepts only lod 0).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ifgan_jax.models.base import CONFIG_CUTOFF, NOISE_MODES, SPACES, Architecture, mapped_architecture
from ifgan_jax.models.layers import (
    CONV_GAIN,
    Buffer,
    channels_at,
    check_resolution,
    conv2d,
    fused_up_kernel,
    lrelu,
    nearest_up_kernel,
    normal_per_image,
    pixel_norm,
    upsample_conv,
)
from ifgan_jax.models.nnx_bind import bind

STYLE_GAIN = 1.0  # style modulation dense layers are linear
MAPPING_LAYERS = 8
MAPPING_LR_MULTIPLIER = 0.01  # runtime factor on mapping weights (besides He) and biases, stored 1/lr larger
INSTANCE_NORM_EPS = 1e-8
AUTO_FUSED_MIN_RES = 128  # fused_scale='auto' uses the transposed conv from this resolution on
CONST_SIZE = 4
# The [1, 2, 1] x [1, 2, 1] / 16 blur after every up-sampling conv, applied as two separable passes.
BLUR_1D = (0.25, 0.5, 0.25)


def num_layers_for(resolution: int) -> int:
    """Layers of a W+ code: two per resolution 4 ... R, i.e. 2 * log2(R) - 2."""
    return 2 * check_resolution(resolution) - 2


@dataclasses.dataclass(frozen=True)
class Config:
    """StyleGAN generator architecture plus InterFaceGAN's sampling settings (truncation, noise)."""

    resolution: int = 1024
    latent_dim: int = 512  # z and w dimension
    fused_scale: str | bool = "auto"  # transposed-conv up-sampling: True, False, or 'auto' (>= 128)
    output_channels: int = 3
    truncation_psi: float = 0.7  # InterFaceGAN's STYLEGAN_TRUNCATION_PSI
    truncation_layers: int = 8  # InterFaceGAN's STYLEGAN_TRUNCATION_LAYERS (psi on layers [0, 8))
    noise_mode: str = "const"  # InterFaceGAN's STYLEGAN_RANDOMIZE_NOISE = False

    def __post_init__(self) -> None:
        check_resolution(self.resolution)
        if self.fused_scale not in (True, False, "auto"):
            raise ValueError(f"fused_scale must be true, false or 'auto', got {self.fused_scale!r}")
        if self.noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {self.noise_mode!r}")
        if self.truncation_layers < 0:  # more than num_layers means all of them, as in InterFaceGAN
            raise ValueError(f"truncation_layers must be >= 0, got {self.truncation_layers}")

    @property
    def num_layers(self) -> int:
        return num_layers_for(self.resolution)

    @property
    def num_blocks(self) -> int:
        """Resolution blocks 4x4 ... resolution (two layers and one ToRGB each)."""
        return self.num_layers // 2

    def layer_resolution(self, layer: int) -> int:
        return 2 ** (layer // 2 + 2)

    def layer_channels(self, layer: int) -> int:
        return channels_at(self.layer_resolution(layer))

    def is_fused(self, layer: int) -> bool:
        """Whether up-sampling layer `layer` (even, >= 2) uses the fused transposed convolution."""
        if self.fused_scale == "auto":
            return self.layer_resolution(layer) >= AUTO_FUSED_MIN_RES
        return bool(self.fused_scale)


# -- blocks ------------------------------------------------------------------------------------------


class DenseBlock(nnx.Module):
    """InterFaceGAN's `DenseBlock`: linear (no bias) -> x * scale + bias * lr_mult -> [leaky ReLU]."""

    def __init__(self, in_features: int, out_features: int, gain: float, lr_multiplier: float, act: bool):
        self.weight = nnx.Param(jnp.zeros((in_features, out_features)))
        self.bias = nnx.Param(jnp.zeros((out_features,)))
        self.scale = gain / math.sqrt(in_features) * lr_multiplier
        self.lr_multiplier = lr_multiplier
        self.act = act

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x @ self.weight[...] * self.scale + self.bias[...] * self.lr_multiplier
        return lrelu(x) if self.act else x


class Mapping(nnx.Module):
    """z -> w: pixel norm, then 8 dense layers at lr multiplier 0.01 with leaky ReLU."""

    def __init__(self, latent_dim: int):
        for i in range(MAPPING_LAYERS):
            setattr(self, f"dense{i}", DenseBlock(latent_dim, latent_dim, CONV_GAIN, MAPPING_LR_MULTIPLIER, True))

    def __call__(self, z: jax.Array) -> jax.Array:
        x = pixel_norm(z)
        for i in range(MAPPING_LAYERS):
            x = getattr(self, f"dense{i}")(x)
        return x


class Truncation(nnx.Module):
    """w -> wp: broadcast to every layer, then w_avg + (w - w_avg) * psi on the first layers."""

    def __init__(self, config: Config):
        self.w_avg = Buffer(jnp.zeros((config.latent_dim,)))
        self.psi = float(config.truncation_psi)
        self.cutoff = int(config.truncation_layers)
        self.num_layers = config.num_layers

    def __call__(self, w: jax.Array, psi: float | None = None, cutoff: int | None = CONFIG_CUTOFF) -> jax.Array:
        """psi (None: the config's) on the first `cutoff` layers (None: all; CONFIG_CUTOFF: the config's)."""
        psi = self.psi if psi is None else float(psi)
        cutoff = self.cutoff if cutoff == CONFIG_CUTOFF else self.num_layers if cutoff is None else cutoff
        coefs = np.ones((self.num_layers, 1), np.float32)
        coefs[:cutoff] = psi
        w_avg = self.w_avg[...]
        wp = jnp.broadcast_to(w[:, None, :], (w.shape[0], self.num_layers, w.shape[-1]))
        # The same formula on every layer (coefficient 1 past the cutoff), as InterFaceGAN.
        return w_avg + (wp - w_avg) * jnp.asarray(coefs)


class NoiseApplying(nnx.Module):
    """x + noise * weight (per channel); the noise is chosen by `Synthesis` from the noise mode."""

    def __init__(self, resolution: int, channels: int):
        self.weight = nnx.Param(jnp.zeros((channels,)))
        self.noise = Buffer(jnp.zeros((resolution, resolution)))

    def __call__(self, x: jax.Array, noise: jax.Array | None) -> jax.Array:
        if noise is None:
            return x
        return x + noise[..., None] * self.weight[...]


class StyleModulation(nnx.Module):
    """AdaIN style: style = dense(w) (gain 1, lr 1) split into (scale, shift); x * (scale + 1) + shift."""

    def __init__(self, channels: int, w_dim: int):
        self.weight = nnx.Param(jnp.zeros((w_dim, 2 * channels)))
        self.bias = nnx.Param(jnp.zeros((2 * channels,)))
        self.scale = STYLE_GAIN / math.sqrt(w_dim)
        self.channels = channels

    def __call__(self, x: jax.Array, w: jax.Array) -> jax.Array:
        style = w @ self.weight[...] * self.scale + self.bias[...]
        scale = style[:, None, None, : self.channels]
        shift = style[:, None, None, self.channels :]
        return x * (scale + 1.0) + shift


def instance_norm(x: jax.Array, eps: float = INSTANCE_NORM_EPS) -> jax.Array:
    """Per image and channel: subtract the spatial mean, divide by sqrt(mean square + eps)."""
    x = x - jnp.mean(x, axis=(1, 2), keepdims=True)
    return x / jnp.sqrt(jnp.mean(jnp.square(x), axis=(1, 2), keepdims=True) + eps)


class Epilogue(nnx.Module):
    """After each conv: noise, + bias, leaky ReLU, instance norm, style modulation."""

    def __init__(self, resolution: int, channels: int, w_dim: int):
        self.apply_noise = NoiseApplying(resolution, channels)
        self.bias = nnx.Param(jnp.zeros((channels,)))
        self.style_mod = StyleModulation(channels, w_dim)

    def __call__(self, x: jax.Array, w: jax.Array, noise: jax.Array | None) -> jax.Array:
        x = self.apply_noise(x, noise)
        x = lrelu(x + self.bias[...])
        return self.style_mod(instance_norm(x), w)


def blur(x: jax.Array) -> jax.Array:
    """Depthwise [1, 2, 1] x [1, 2, 1] / 16 blur with zero padding 1, as two shifted-add passes.

    XLA:CPU's grouped (depthwise) convolution is far slower than a few shifted multiply-adds.
    """
    k0, k1, k2 = BLUR_1D
    p = jnp.pad(x, ((0, 0), (1, 1), (0, 0), (0, 0)))
    x = p[:, :-2] * k0 + p[:, 1:-1] * k1 + p[:, 2:] * k2
    p = jnp.pad(x, ((0, 0), (0, 0), (1, 1), (0, 0)))
    return p[:, :, :-2] * k0 + p[:, :, 1:-1] * k1 + p[:, :, 2:] * k2


def layer_noise(key: jax.Array, layer: int, batch: int, resolution: int) -> jax.Array:
    """Random noise (batch, R, R) of one layer: the key folded with the layer index, one map per image."""
    return normal_per_image(_fold_layer(key, layer), batch, (resolution, resolution))


def _fold_layer(key: jax.Array, layer: int) -> jax.Array:
    """The key (or each per-image key) folded with a layer index."""
    if key.ndim == (1 if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else 2):
        return jax.vmap(lambda k: jax.random.fold_in(k, layer))(key)
    return jax.random.fold_in(key, layer)


class FirstConvBlock(nnx.Module):
    """Layer 0: the learned constant 4x4 input and its epilogue."""

    def __init__(self, channels: int, w_dim: int):
        self.const = nnx.Param(jnp.ones((CONST_SIZE, CONST_SIZE, channels)))
        self.epilogue = Epilogue(CONST_SIZE, channels, w_dim)

    def __call__(self, w: jax.Array, noise: jax.Array | None) -> jax.Array:
        const = self.const[...]
        x = jnp.broadcast_to(const, (w.shape[0], *const.shape))
        return self.epilogue(x, w, noise)


class ConvBlock(nnx.Module):
    """A 3x3 conv layer: `up` = nearest 2x (or fused transposed conv when `fused`) then blur.

    The equalized-lr scale multiplies the conv output (InterFaceGAN: `conv(x) * scale`; the fused path
    scales the kernel, which is the same product).
    """

    def __init__(self, resolution: int, in_ch: int, out_ch: int, w_dim: int, up: bool, fused: bool):
        self.weight = nnx.Param(jnp.zeros((3, 3, in_ch, out_ch)))
        self.epilogue = Epilogue(resolution, out_ch, w_dim)
        self.scale = CONV_GAIN / math.sqrt(in_ch * 9)
        self.up = up
        self.fused = fused

    def __call__(self, x: jax.Array, w: jax.Array, noise: jax.Array | None) -> jax.Array:
        kernel = self.weight[...]
        if self.up:
            up_kernel = fused_up_kernel(kernel) if self.fused else nearest_up_kernel(kernel)
            x = blur(upsample_conv(x, up_kernel) * self.scale)
        else:
            x = conv2d(x, kernel) * self.scale
        return self.epilogue(x, w, noise)


class ToRGB(nnx.Module):
    """InterFaceGAN's `LastConvBlock`: 1x1 conv * (1 / sqrt(C)) + bias, linear."""

    def __init__(self, in_ch: int, out_ch: int):
        self.weight = nnx.Param(jnp.zeros((1, 1, in_ch, out_ch)))
        self.bias = nnx.Param(jnp.zeros((out_ch,)))
        self.scale = 1.0 / math.sqrt(in_ch)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.einsum("nhwc,co->nhwo", x, self.weight[0, 0]) * self.scale + self.bias[...]


class Synthesis(nnx.Module):
    """wp (N, L, d) -> image (N, R, R, 3)."""

    def __init__(self, config: Config):
        self.config = config
        d = config.latent_dim
        for layer in range(config.num_layers):
            res, ch = config.layer_resolution(layer), config.layer_channels(layer)
            if layer == 0:
                block = FirstConvBlock(ch, d)
            else:
                up = layer % 2 == 0
                in_ch = config.layer_channels(layer - 1)
                block = ConvBlock(res, in_ch, ch, d, up, up and config.is_fused(layer))
            setattr(self, f"layer{layer}", block)
        for k in range(config.num_blocks):
            setattr(self, f"output{k}", ToRGB(config.layer_channels(2 * k), config.output_channels))
        # Level of detail: 0 in every released model; the converter rejects other values.
        self.lod = Buffer(jnp.zeros(()))

    def noise(self, layer: int, batch: int, key: jax.Array | None, mode: str) -> jax.Array | None:
        if mode == "none":
            return None
        if mode == "const":
            return getattr(self, f"layer{layer}").epilogue.apply_noise.noise[...]
        if key is None:
            raise ValueError("noise_mode 'random' needs a PRNG key")
        return layer_noise(key, layer, batch, self.config.layer_resolution(layer))

    def __call__(self, wp: jax.Array, key: jax.Array | None = None, noise_mode: str | None = None) -> jax.Array:
        """Images for W+ codes; noise_mode None: the config's."""
        n, mode = wp.shape[0], noise_mode or self.config.noise_mode
        x = self.layer0(wp[:, 0], self.noise(0, n, key, mode))
        for layer in range(1, self.config.num_layers):
            x = getattr(self, f"layer{layer}")(x, wp[:, layer], self.noise(layer, n, key, mode))
        # Only the last ToRGB contributes at lod 0 (InterFaceGAN computes and discards the others).
        return getattr(self, f"output{self.config.num_blocks - 1}")(x)


class StyleGANGenerator(nnx.Module):
    """The whole generator: `mapping`, `truncation`, `synthesis` as in InterFaceGAN."""

    def __init__(self, config: Config):
        self.mapping = Mapping(config.latent_dim)
        self.truncation = Truncation(config)
        self.synthesis = Synthesis(config)

    def truncate(self, w: jax.Array, psi: float | None = None, cutoff: int | None = CONFIG_CUTOFF) -> jax.Array:
        return self.truncation(w, psi, cutoff)


def architecture(config: Config) -> Architecture:
    """StyleGAN as pure functions for `Generator` (spaces z, w, wp; z is normalized by the caller)."""
    return mapped_architecture("stylegan", bind(lambda rngs: StyleGANGenerator(config)), config.resolution,
                               config.latent_dim, config.num_layers, SPACES,
                               lambda m, wp, key, mode: m.synthesis(wp, key, mode), normalize_z=True,
                               noise_modes=NOISE_MODES, truncation=(config.truncation_psi, config.truncation_layers))


def param_shapes(config: Config) -> tuple[dict, dict]:
    """Expected (params, buffers) shapes as pure dicts of ShapeDtypeStruct."""
    return bind(lambda rngs: StyleGANGenerator(config)).shapes()

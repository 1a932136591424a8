"""StyleGAN2 config-f (NVlabs' stylegan2-ada-pytorch `training/networks.py`, rosinality's `model.py`) as flax.nnx.

The generator both repositories implement: a mapping network z -> w (2nd-moment normalization, dense layers at
a learning-rate multiplier, leaky ReLU x sqrt(2)), w_avg truncation with psi and a layer cutoff, and a
synthesis network of resolution blocks 4 ... R, each with a modulated 3x3 convolution that up-samples (a
stride-2 transposed convolution followed by the [1,3,3,1] FIR filter at gain 4), a modulated 3x3 convolution,
noise inputs, bias + leaky ReLU x sqrt(2) clamped to +-conv_clamp, and a skip ToRGB whose running image is
up-sampled by the same FIR filter. NHWC throughout; channels per block min(channel_base / res, channel_max).

Modulation with demodulation is computed the non-fused way, which is the same product: the input channels are
scaled by the styles, one convolution with the shared weight runs over the whole batch, and the output is
scaled by the demodulation coefficients rsqrt(styles^2 @ sum_kk(weight^2) + 1e-8). A per-image (grouped)
convolution, the fused form, is far slower on XLA:CPU.

Pytree layout (names follow NVlabs' modules, so the converters read like tables):
- params: `mapping/fc{i}/{weight (in, out), bias}`; `synthesis/b4/const (4, 4, C)`;
  `synthesis/b{R}/{conv0,conv1}/{weight (3, 3, in, out), bias, noise_strength (), affine/{weight (w, in), bias}}`
  (b4 has conv1 only); `synthesis/b{R}/torgb/{weight (C, img_channels), bias, affine/{weight, bias}}`.
- buffers: `mapping/w_avg (w,)`; `synthesis/b{R}/conv{k}/noise (R, R)` (or (N, R, R): per-image maps, as
  inversion optimizes them).

Noise (`Config.noise_mode`): 'const' adds the stored maps, 'random' draws fresh ones from the `key` given to
`synthesize` (per image and layer), 'none' adds none. Always float32; weights trained in fp16 are read as fp32.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ifgan_jax.models.base import CONFIG_CUTOFF, NOISE_MODES, SPACES, Architecture, mapped_architecture
from ifgan_jax.models.layers import Buffer, normal_per_image
from ifgan_jax.models.nnx_bind import bind

ARCHITECTURES = ("skip",)  # NVlabs' 'orig' and 'resnet' generators are refused by the converters
RESOLUTIONS = tuple(2**k for k in range(3, 12))  # 8 ... 2048
CONST_SIZE = 4
KERNEL_SIZE = 3
LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)  # bias_act's default gain for 'lrelu'
NORMALIZE_EPS = 1e-8  # normalize_2nd_moment / PixelNorm
DEMODULATE_EPS = 1e-8
# The resampling filter: [1, 3, 3, 1] normalized to sum 1 per axis; up-sampling by 2 multiplies it by 2 per
# axis (NVlabs' `gain=up**2` on the 2-D filter, rosinality's `make_kernel(k) * factor**2`).
RESAMPLE_FILTER = (1.0, 3.0, 3.0, 1.0)
UP_FACTOR = 2
_F = tuple(UP_FACTOR * t / sum(RESAMPLE_FILTER) for t in RESAMPLE_FILTER)  # (0.25, 0.75, 0.75, 0.25) per axis
_DN = ("NHWC", "HWIO", "NHWC")


@dataclasses.dataclass(frozen=True)
class Config:
    """StyleGAN2 generator architecture plus the sampling settings (truncation, noise)."""

    resolution: int = 1024
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    channel_base: int = 32768  # NVlabs' config-f (rosinality: 16384 * channel_multiplier)
    channel_max: int = 512
    img_channels: int = 3
    conv_clamp: float | None = None  # clamp conv outputs to +-X (ADA trains with 256), None: no clamp
    architecture: str = "skip"
    truncation_psi: float = 1.0  # NVlabs' default: no truncation
    truncation_cutoff: int | None = None  # psi on the first `cutoff` W+ layers; None: all of them
    noise_mode: str = "const"

    def __post_init__(self) -> None:
        if self.resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {self.resolution}")
        if self.z_dim != self.w_dim:
            raise ValueError(f"z_dim ({self.z_dim}) must equal w_dim ({self.w_dim}): z, w and wp codes share one size")
        if min(self.w_dim, self.mapping_layers, self.channel_base, self.channel_max, self.img_channels) < 1:
            raise ValueError("dimensions, mapping layers and channel counts must be positive")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        check_sampling_settings(self)

    @property
    def block_resolutions(self) -> tuple[int, ...]:
        return tuple(2**k for k in range(2, int(math.log2(self.resolution)) + 1))

    @property
    def num_layers(self) -> int:
        """W+ codes: two per block but one at 4x4, plus the last ToRGB: 2 * log2(R) - 2."""
        return 2 * len(self.block_resolutions)

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)


# -- ops ----------------------------------------------------------------------------------------------


def bias_act(x: jax.Array, bias: jax.Array, clamp: float | None, act: bool) -> jax.Array:
    """NVlabs' bias_act: + bias, [leaky ReLU 0.2 then x sqrt(2)], clamp to +-clamp."""
    x = x + bias
    if act:
        x = jnp.where(x >= 0, x, x * LRELU_SLOPE) * LRELU_GAIN
    return x if clamp is None else jnp.clip(x, -clamp, clamp)


def normalize_2nd_moment(x: jax.Array) -> jax.Array:
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + NORMALIZE_EPS)


def _fir_up_axis(even: jax.Array, odd: jax.Array, axis: int) -> jax.Array:
    """One axis of [transposed conv -> pad 1 -> 4-tap FIR]: phases E (n+1 long), O (n long) -> 2n samples.

    The stride-2 transposed conv writes E at output rows 0, 2, ..., 2n and O at 1, 3, ..., 2n-1; the FIR then
    gives y[2j] = f0 O[j-1] + f1 E[j] + f2 O[j] + f3 E[j+1] and y[2j+1] = f0 E[j] + f1 O[j] + f2 E[j+1] +
    f3 O[j+1], with O zero outside [0, n).
    """
    n = odd.shape[axis]
    pad = [(0, 0)] * odd.ndim
    pad[axis] = (1, 1)
    o = jnp.pad(odd, pad)  # o[j + 1] = O[j]

    def take(a: jax.Array, start: int) -> jax.Array:
        return jax.lax.slice_in_dim(a, start, start + n, axis=axis)

    f0, f1, f2, f3 = _F
    y0 = f0 * take(o, 0) + f1 * take(even, 0) + f2 * take(o, 1) + f3 * take(even, 1)
    y1 = f0 * take(even, 0) + f1 * take(o, 1) + f2 * take(even, 1) + f3 * take(o, 2)
    y = jnp.stack([y0, y1], axis=axis + 1)
    shape = list(odd.shape)
    shape[axis] = 2 * n
    return y.reshape(shape)


def upsample_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """NVlabs' conv2d_resample(up=2, padding=1) for a 3x3 kernel: transposed conv, then the FIR filter, gain 4.

    The stride-2 transposed convolution is computed per output phase on the low-resolution input (taps
    {0, 2} for even rows, {1} for odd ones, per axis: 9 taps in all, no multiplications by inserted zeros),
    then the separable FIR filter combines the phases into the 2x image.
    """

    def phase(rows: slice, cols: slice, pad_rows: tuple, pad_cols: tuple) -> jax.Array:
        # conv_transpose taps kernel[k] at output 2i + k; as a correlation over the input the taps run reversed.
        k = kernel[rows, cols][::-1, ::-1]
        return jax.lax.conv_general_dilated(x, k, (1, 1), (pad_rows, pad_cols), dimension_numbers=_DN)

    even, odd = slice(0, 3, 2), slice(1, 2)
    ee = phase(even, even, (1, 1), (1, 1))  # (H+1, W+1)
    eo = phase(even, odd, (1, 1), (0, 0))  # (H+1, W)
    oe = phase(odd, even, (0, 0), (1, 1))  # (H, W+1)
    oo = phase(odd, odd, (0, 0), (0, 0))  # (H, W)
    col_even = _fir_up_axis(ee, oe, axis=1)  # rows done: (2H, W+1)
    col_odd = _fir_up_axis(eo, oo, axis=1)  # (2H, W)
    return _fir_up_axis(col_even, col_odd, axis=2)


def upsample_image(img: jax.Array) -> jax.Array:
    """NVlabs' upsample2d(img, [1,3,3,1]): y[2j] = f0 x[j-1] + f2 x[j], y[2j+1] = f1 x[j] + f3 x[j+1] per axis."""
    f0, f1, f2, f3 = _F
    for axis in (1, 2):
        n = img.shape[axis]
        pad = [(0, 0)] * img.ndim
        pad[axis] = (1, 1)
        p = jnp.pad(img, pad)  # p[j + 1] = x[j]
        prev, cur, nxt = (jax.lax.slice_in_dim(p, s, s + n, axis=axis) for s in (0, 1, 2))
        y = jnp.stack([f0 * prev + f2 * cur, f1 * cur + f3 * nxt], axis=axis + 1)
        shape = list(img.shape)
        shape[axis] = 2 * n
        img = y.reshape(shape)
    return img


# -- modules ------------------------------------------------------------------------------------------


class Dense(nnx.Module):
    """NVlabs' FullyConnectedLayer: x @ (weight * lr / sqrt(in)) + bias * lr, [leaky ReLU x sqrt(2)]."""

    def __init__(self, in_features: int, out_features: int, lr_multiplier: float = 1.0, act: bool = False):
        self.weight = nnx.Param(jnp.zeros((in_features, out_features)))
        self.bias = nnx.Param(jnp.zeros((out_features,)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.act = act

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x @ (self.weight[...] * self.weight_gain)
        return bias_act(x, self.bias[...] * self.bias_gain, None, self.act)


class Mapping(nnx.Module):
    """z -> w: normalize_2nd_moment, then `mapping_layers` dense layers; `w_avg` for truncation."""

    def __init__(self, config: Config):
        for i in range(config.mapping_layers):
            setattr(self, f"fc{i}", Dense(config.w_dim, config.w_dim, config.mapping_lr_multiplier, act=True))
        self.w_avg = Buffer(jnp.zeros((config.w_dim,)))
        self.num_layers = config.mapping_layers

    def __call__(self, z: jax.Array) -> jax.Array:
        x = normalize_2nd_moment(z)
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        return x

    def truncate(self, w: jax.Array, num_ws: int, psi: float, cutoff: int | None) -> jax.Array:
        """Broadcast w to W+ and lerp the first `cutoff` layers (all when None) toward w_avg by psi."""
        wp = jnp.broadcast_to(w[:, None, :], (w.shape[0], num_ws, w.shape[-1]))
        if psi == 1:
            return wp
        w_avg = self.w_avg[...]
        truncated = w_avg + psi * (wp - w_avg)
        if cutoff is None or cutoff >= num_ws:
            return truncated
        layer = jnp.arange(num_ws)[None, :, None]
        return jnp.where(layer < cutoff, truncated, wp)


class SynthesisLayer(nnx.Module):
    """A modulated 3x3 conv (demodulated; up-sampling when `up`), noise, bias + leaky ReLU, clamp."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, resolution: int, up: bool, conv_clamp: float | None):
        self.affine = Dense(w_dim, in_ch)
        self.weight = nnx.Param(jnp.zeros((KERNEL_SIZE, KERNEL_SIZE, in_ch, out_ch)))
        self.bias = nnx.Param(jnp.zeros((out_ch,)))
        self.noise_strength = nnx.Param(jnp.zeros(()))
        self.noise = Buffer(jnp.zeros((resolution, resolution)))
        self.up = up
        self.conv_clamp = conv_clamp

    def __call__(self, x: jax.Array, w: jax.Array, noise: jax.Array | None) -> jax.Array:
        styles = self.affine(w)  # (N, in)
        weight = self.weight[...]
        dcoefs = jax.lax.rsqrt(jnp.square(styles) @ jnp.sum(jnp.square(weight), axis=(0, 1)) + DEMODULATE_EPS)
        x = x * styles[:, None, None, :]
        if self.up:
            x = upsample_conv(x, weight)
        else:
            x = jax.lax.conv_general_dilated(x, weight, (1, 1), "SAME", dimension_numbers=_DN)
        x = x * dcoefs[:, None, None, :]
        if noise is not None:
            x = x + noise[..., None] * self.noise_strength[...]
        return bias_act(x, self.bias[...], self.conv_clamp, act=True)


class ToRGB(nnx.Module):
    """A modulated 1x1 conv without demodulation (styles x 1/sqrt(in)), + bias, clamp."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, conv_clamp: float | None):
        self.affine = Dense(w_dim, in_ch)
        self.weight = nnx.Param(jnp.zeros((in_ch, out_ch)))
        self.bias = nnx.Param(jnp.zeros((out_ch,)))
        self.weight_gain = 1.0 / math.sqrt(in_ch)
        self.conv_clamp = conv_clamp

    def __call__(self, x: jax.Array, w: jax.Array) -> jax.Array:
        styles = self.affine(w) * self.weight_gain
        y = jnp.einsum("nhwc,co->nhwo", x * styles[:, None, None, :], self.weight[...])
        return bias_act(y, self.bias[...], self.conv_clamp, act=False)


class SynthesisBlock(nnx.Module):
    """One resolution: [const] or conv0 (up), conv1, torgb; the skip image is up-sampled and summed."""

    def __init__(self, config: Config, res: int):
        out_ch = config.channels(res)
        clamp = config.conv_clamp
        if res == CONST_SIZE:
            self.const = nnx.Param(jnp.zeros((CONST_SIZE, CONST_SIZE, out_ch)))
        else:
            self.conv0 = SynthesisLayer(config.channels(res // 2), out_ch, config.w_dim, res, True, clamp)
        self.conv1 = SynthesisLayer(out_ch, out_ch, config.w_dim, res, False, clamp)
        self.torgb = ToRGB(out_ch, config.img_channels, config.w_dim, clamp)
        self.first = res == CONST_SIZE

    def layers(self) -> list[SynthesisLayer]:
        return [self.conv1] if self.first else [self.conv0, self.conv1]

    def __call__(self, x, img, ws: jax.Array, noises: list) -> tuple[jax.Array, jax.Array]:
        """ws: (N, num_conv + 1, w_dim), the block's conv codes then its ToRGB code."""
        if self.first:
            const = self.const[...]
            x = jnp.broadcast_to(const, (ws.shape[0], *const.shape))
        for i, layer in enumerate(self.layers()):
            x = layer(x, ws[:, i], noises[i])
        y = self.torgb(x, ws[:, -1])
        img = y if img is None else upsample_image(img) + y
        return x, img


class Synthesis(nnx.Module):
    """wp (N, num_layers, w_dim) -> image (N, R, R, img_channels)."""

    def __init__(self, config: Config):
        self.config = config
        for res in config.block_resolutions:
            setattr(self, f"b{res}", SynthesisBlock(config, res))

    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{res}") for res in self.config.block_resolutions]

    def __call__(self, wp: jax.Array, key: jax.Array | None = None, noise_mode: str | None = None) -> jax.Array:
        """Images for W+ codes; noise_mode None: the config's."""
        noises = iter(self.noises(wp.shape[0], key, noise_mode or self.config.noise_mode))
        x = img = None
        w_idx = 0
        for block in self.blocks():
            n = len(block.layers())
            # NVlabs' split: block k reads codes [w_idx, w_idx + num_conv + 1) and advances by num_conv.
            x, img = block(x, img, wp[:, w_idx : w_idx + n + 1], [next(noises) for _ in range(n)])
            w_idx += n
        return img

    def noises(self, batch: int, key: jax.Array | None, mode: str) -> list[jax.Array | None]:
        """Per conv layer: the stored map ('const'), a fresh (batch, R, R) draw ('random') or None ('none')."""
        layers = [layer for block in self.blocks() for layer in block.layers()]
        if mode == "none":
            return [None] * len(layers)
        if mode == "const":
            return [layer.noise[...] for layer in layers]
        if key is None:
            raise ValueError("noise_mode 'random' needs a PRNG key")
        # One draw for every layer: a PRNG call per layer made XLA:CPU compile 5x longer.
        sizes = [layer.noise.shape[-1] for layer in layers]
        flat = normal_per_image(key, batch, (sum(r * r for r in sizes),))
        offsets = np.cumsum([0] + [r * r for r in sizes])
        return [flat[:, offsets[i]: offsets[i + 1]].reshape(batch, r, r) for i, r in enumerate(sizes)]


class MappedGenerator(nnx.Module):
    """mapping -> truncation (psi and cutoff from the config unless given) -> synthesis, for StyleGAN2 and
    StyleGAN3 (their configs share the mapping and truncation fields)."""

    def __init__(self, config: Any, synthesis: nnx.Module, num_ws: int):
        self.mapping = Mapping(config)
        self.synthesis = synthesis
        self.config = config
        self.num_ws = num_ws

    def truncate(self, w: jax.Array, psi: float | None = None, cutoff: int | None = CONFIG_CUTOFF) -> jax.Array:
        psi = self.config.truncation_psi if psi is None else psi
        cutoff = self.config.truncation_cutoff if cutoff == CONFIG_CUTOFF else cutoff
        return self.mapping.truncate(w, self.num_ws, psi, cutoff)


def generator(config: Config) -> MappedGenerator:
    return MappedGenerator(config, Synthesis(config), config.num_layers)


def check_sampling_settings(config: Any) -> None:
    """The settings StyleGAN2 and StyleGAN3 configs share: noise, clamp, truncation, mapping lr multiplier."""
    if config.noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {config.noise_mode!r}")
    if config.conv_clamp is not None and not config.conv_clamp >= 0:
        raise ValueError(f"conv_clamp must be >= 0 or None, got {config.conv_clamp}")
    if config.truncation_cutoff is not None and config.truncation_cutoff < 0:
        raise ValueError(f"truncation_cutoff must be >= 0 or None, got {config.truncation_cutoff}")
    if not math.isfinite(config.truncation_psi) or not config.mapping_lr_multiplier > 0:
        raise ValueError("truncation_psi must be finite and mapping_lr_multiplier positive")


def architecture(config: Config) -> Architecture:
    """StyleGAN2 as pure functions for `Generator` (spaces z, w, wp; z is normalized by the mapping itself)."""
    return mapped_architecture("stylegan2", bind(lambda rngs: generator(config)), config.resolution,
                               config.w_dim, config.num_layers, SPACES,
                               lambda m, wp, key, mode: m.synthesis(wp, key, mode), noise_modes=NOISE_MODES,
                               truncation=(config.truncation_psi, config.truncation_cutoff))


def param_shapes(config: Config) -> tuple[dict, dict]:
    """Expected (params, buffers) shapes as pure dicts of ShapeDtypeStruct."""
    return bind(lambda rngs: generator(config)).shapes()

"""StyleGAN3 (NVlabs' stylegan3 `training/networks_stylegan3.py`, configs T and R) as flax.nnx, NHWC, plain XLA.

Mapping and truncation as StyleGAN2. Synthesis: Fourier features (`SynthesisInput`: frequencies and phases
rotated and translated by an affine of w, sampled on a grid with margin, then a learned channel mixing), then
`num_layers` modulated convolutions (3x3 for T, 1x1 for R; weights and styles pre-normalized, demodulated,
scaled by the layer's input-magnitude EMA), each followed by the filtered leaky ReLU: + bias, up-sampling by
zero insertion and the layer's FIR `up_filter`, leaky ReLU x sqrt(2) clamped to +-conv_clamp, FIR
`down_filter` and down-sampling; the last layer is the ToRGB (1x1, no demodulation, linear), and the image is
scaled by `output_scale`. Every layer's sizes, sampling rates, factors and paddings follow NVlabs' design
formulas from the Config (`layer_specs`); the filters themselves (Kaiser / jinc designs, scipy there) are
buffers read from the weights file. The FIR filters run as shifted multiply-adds (separable, T; radial 2-D,
R, only at the kept outputs): no custom kernels, jittable and differentiable.

Pytree layout: params `mapping/fc{i}/{weight (in, out), bias}`, `synthesis/input/{weight (C, C) (in, out),
affine/{weight (w, 4), bias}}`, `synthesis/L{i}/{weight (k, k, in, out), bias, affine/{weight, bias}}`;
buffers `mapping/w_avg`, `synthesis/input/{transform (3, 3), freqs (C, 2), phases (C,)}`,
`synthesis/L{i}/{magnitude_ema (), up_filter, down_filter}` (a filter is absent where it is the identity).
StyleGAN3 has no noise inputs: `noise_mode` is accepted for a uniform API and changes nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ifgan_jax.models.base import Architecture, mapped_architecture
from ifgan_jax.models.layers import Buffer
from ifgan_jax.models.nnx_bind import bind
from ifgan_jax.models.stylegan2 import SPACES, Dense, MappedGenerator, bias_act, check_sampling_settings

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
DEMODULATE_EPS = 1e-8
TORGB_KERNEL = 1
_DN = ("NHWC", "HWIO", "NHWC")


class LayerSpec(NamedTuple):
    """One synthesis layer's static facts (NVlabs' SynthesisLayer attributes)."""

    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    up: int
    down: int
    up_taps: int
    down_taps: int
    down_radial: bool
    padding: tuple[int, int, int, int]  # x0, x1, y0, y1 (NVlabs' order)
    kernel: int
    is_torgb: bool


@dataclasses.dataclass(frozen=True)
class Config:
    """StyleGAN3 generator architecture (NVlabs' kwargs) plus the sampling settings (truncation)."""

    resolution: int = 1024
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 2
    mapping_lr_multiplier: float = 0.01
    img_channels: int = 3
    channel_base: int = 32768
    channel_max: int = 512
    num_layers: int = 14
    num_critical: int = 2
    first_cutoff: float = 2.0
    first_stopband: float = 2**2.1
    last_stopband_rel: float = 2**0.3
    margin_size: int = 10
    output_scale: float = 0.25
    conv_kernel: int = 3  # 1 for config R
    filter_size: int = 6
    lrelu_upsampling: int = 2
    use_radial_filters: bool = False  # True for config R
    conv_clamp: float | None = 256.0
    truncation_psi: float = 1.0
    truncation_cutoff: int | None = None
    noise_mode: str = "const"

    def __post_init__(self) -> None:
        if self.resolution < 4 or self.resolution & (self.resolution - 1):
            raise ValueError(f"resolution must be a power of two >= 4, got {self.resolution}")
        if self.z_dim != self.w_dim:
            raise ValueError(f"z_dim ({self.z_dim}) must equal w_dim ({self.w_dim}): z, w and wp codes share one size")
        if self.num_layers <= self.num_critical or min(self.num_critical, self.margin_size) < 0:
            raise ValueError("num_layers must exceed num_critical >= 0 and margin_size must be >= 0")
        if min(self.w_dim, self.mapping_layers, self.channel_base, self.channel_max, self.img_channels,
               self.conv_kernel, self.filter_size, self.lrelu_upsampling) < 1:
            raise ValueError("dimensions, layer counts, channels, kernel and filter sizes must be positive")
        check_sampling_settings(self)

    @property
    def num_ws(self) -> int:
        """W+ codes: the input, every layer, the ToRGB."""
        return self.num_layers + 2

    def design(self) -> dict[str, np.ndarray]:
        """NVlabs' SynthesisNetwork formulas: per layer cutoffs, sampling rates, half widths, sizes, channels."""
        last_cutoff = self.resolution / 2
        last_stopband = last_cutoff * self.last_stopband_rel
        exponents = np.minimum(np.arange(self.num_layers + 1) / (self.num_layers - self.num_critical), 1)
        cutoffs = self.first_cutoff * (last_cutoff / self.first_cutoff) ** exponents
        stopbands = self.first_stopband * (last_stopband / self.first_stopband) ** exponents
        rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, self.resolution))))
        half_widths = np.maximum(stopbands, rates / 2) - cutoffs
        sizes = rates + self.margin_size * 2
        sizes[-2:] = self.resolution
        channels = np.rint(np.minimum((self.channel_base / 2) / cutoffs, self.channel_max))
        channels[-1] = self.img_channels
        return {"cutoffs": cutoffs, "rates": rates, "half_widths": half_widths, "sizes": sizes, "channels": channels}

    def layer_specs(self) -> tuple[LayerSpec, ...]:
        d = self.design()
        specs = []
        for idx in range(self.num_layers + 1):
            prev = max(idx - 1, 0)
            torgb = idx == self.num_layers
            critical = idx >= self.num_layers - self.num_critical
            in_rate, out_rate = int(d["rates"][prev]), int(d["rates"][idx])
            tmp_rate = max(in_rate, out_rate) * (1 if torgb else self.lrelu_upsampling)
            up, down = int(np.rint(tmp_rate / in_rate)), int(np.rint(tmp_rate / out_rate))
            if in_rate * up != tmp_rate or out_rate * down != tmp_rate:
                raise ValueError(f"layer {idx}: sampling rates {in_rate} -> {out_rate} are not integer multiples")
            up_taps = self.filter_size * up if up > 1 and not torgb else 1
            down_taps = self.filter_size * down if down > 1 and not torgb else 1
            kernel = TORGB_KERNEL if torgb else self.conv_kernel
            in_size, out_size = int(d["sizes"][prev]), int(d["sizes"][idx])
            pad_total = (out_size - 1) * down + 1 - (in_size + kernel - 1) * up + up_taps + down_taps - 2
            pad_lo = (pad_total + up) // 2
            pad = (pad_lo, pad_total - pad_lo)
            specs.append(LayerSpec(int(d["channels"][prev]), int(d["channels"][idx]), in_size, out_size, up, down,
                                   up_taps, down_taps, self.use_radial_filters and not critical,
                                   (*pad, *pad), kernel, torgb))
        return tuple(specs)


# -- ops ----------------------------------------------------------------------------------------------


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _correlate(x: jax.Array, k: jax.Array, axis: int) -> jax.Array:
    """Valid correlation along `axis`: y[i] = sum_t x[i + t] k[t], as shifted multiply-adds (XLA:CPU runs a
    depthwise convolution ~25x slower). A custom VJP keeps the backward pass as compact as the forward one:
    differentiated slice by slice, a 24-tap filter made the gradient's compile 4x longer than the network's."""
    taps = k.shape[0]
    n = x.shape[axis] - taps + 1
    out = None
    for t in range(taps):
        term = jax.lax.slice_in_dim(x, t, t + n, axis=axis) * k[t]
        out = term if out is None else out + term
    return out


def _correlate_fwd(x, k, axis):
    return _correlate(x, k, axis), (x, k)


def _correlate_bwd(axis, residuals, g):
    x, k = residuals
    taps = k.shape[0]
    pad = [(0, 0)] * g.ndim
    pad[axis] = (taps - 1, taps - 1)
    dx = _correlate(jnp.pad(g, pad), k[::-1], axis)  # the transposed (full) correlation
    n = g.shape[axis]
    dk = jnp.stack([jnp.sum(jax.lax.slice_in_dim(x, t, t + n, axis=axis) * g) for t in range(taps)])
    return dx, dk


_correlate.defvjp(_correlate_fwd, _correlate_bwd)


def _fir_1d(x: jax.Array, f: jax.Array, axis: int) -> jax.Array:
    """Valid convolution of `x` with the taps `f` along `axis` (NVlabs flips: a true convolution)."""
    return _correlate(x, f[::-1], axis)


def _correlate_2d(x: jax.Array, k: jax.Array, step: int) -> jax.Array:
    """Valid 2-D correlation of each channel of NHWC `x` with `k`, only at every `step`-th row and column:
    y[i, j] = sum_ab x[step i + a, step j + b] k[a, b], as shifted multiply-adds over strided slices. (XLA:CPU
    ran the depthwise convolution at the full rate and 29x slower for StyleGAN3-R's 12 x 12 radial filter
    before 3 of every 4 outputs were dropped; benchmarks/NOTES.md.)"""
    taps_h, taps_w = k.shape
    n_h = (x.shape[1] - taps_h) // step + 1
    n_w = (x.shape[2] - taps_w) // step + 1
    out = None
    for a in range(taps_h):
        for b in range(taps_w):
            term = x[:, a : a + step * (n_h - 1) + 1 : step, b : b + step * (n_w - 1) + 1 : step] * k[a, b]
            out = term if out is None else out + term
    return out


def upfirdn2d(x: jax.Array, f: jax.Array | None, up: int = 1, down: int = 1,
              padding: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 1.0) -> jax.Array:
    """NVlabs' upfirdn2d (NHWC): insert up-1 zeros after each pixel, pad (negative: crop), FIR, keep every down-th."""
    px0, px1, py0, py1 = padding
    if up > 1 or any(padding):
        zero = jnp.zeros((), x.dtype)
        x = jax.lax.pad(x, zero, [(0, 0, 0), (py0, py1 + up - 1, up - 1), (px0, px1 + up - 1, up - 1), (0, 0, 0)])
    if f is not None:
        if f.ndim == 1:  # separable: rows then columns, sqrt(gain) each
            f = f * math.sqrt(gain)
            x = _fir_1d(_fir_1d(x, f, axis=1), f, axis=2)
        else:
            x = _correlate_2d(x, (f * gain)[::-1, ::-1], down)
            down = 1  # the strided correlation kept only every down-th row and column
    elif gain != 1:
        x = x * gain
    if down > 1:
        x = x[:, ::down, ::down]
    return x


# -- modules ------------------------------------------------------------------------------------------


class SynthesisInput(nnx.Module):
    """Fourier features rotated/translated by an affine of w, then a learned channel mixing."""

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float):
        self.weight = nnx.Param(jnp.zeros((channels, channels)))  # (in, out)
        self.affine = Dense(w_dim, 4)
        self.transform = Buffer(jnp.eye(3))
        self.freqs = Buffer(jnp.zeros((channels, 2)))
        self.phases = Buffer(jnp.zeros((channels,)))
        self.size, self.sampling_rate, self.bandwidth, self.channels = size, sampling_rate, bandwidth, channels

    def __call__(self, w: jax.Array) -> jax.Array:
        t = self.affine(w)  # (r_c, r_s, t_x, t_y)
        t = t / jnp.linalg.norm(t[:, :2], axis=1, keepdims=True)
        n = w.shape[0]
        one, zero = jnp.ones((n,)), jnp.zeros((n,))
        m_r = jnp.stack([jnp.stack([t[:, 0], -t[:, 1], zero], -1), jnp.stack([t[:, 1], t[:, 0], zero], -1),
                         jnp.stack([zero, zero, one], -1)], axis=1)
        m_t = jnp.stack([jnp.stack([one, zero, -t[:, 2]], -1), jnp.stack([zero, one, -t[:, 3]], -1),
                         jnp.stack([zero, zero, one], -1)], axis=1)
        transforms = m_r @ m_t @ self.transform[...]
        freqs0 = self.freqs[...]
        phases = self.phases[...] + (freqs0 @ transforms[:, :2, 2:])[..., 0]  # (N, C)
        freqs = freqs0 @ transforms[:, :2, :2]  # (N, C, 2)
        amplitudes = jnp.clip(1 - (jnp.linalg.norm(freqs, axis=2) - self.bandwidth)
                              / (self.sampling_rate / 2 - self.bandwidth), 0, 1)
        # affine_grid(align_corners=False) with theta = diag(0.5 size / rate): pixel centres in [-1, 1], scaled.
        grid = ((2 * jnp.arange(self.size, dtype=jnp.float32) + 1) / self.size - 1) * (0.5 * self.size
                                                                                       / self.sampling_rate)
        fx, fy = freqs[:, None, None, :, 0], freqs[:, None, None, :, 1]  # (N, 1, 1, C)
        x = grid[None, None, :, None] * fx + grid[None, :, None, None] * fy + phases[:, None, None, :]
        x = jnp.sin(x * (np.pi * 2)) * amplitudes[:, None, None, :]
        return x @ (self.weight[...] / np.sqrt(self.channels))


class SynthesisLayer(nnx.Module):
    """Modulated conv (pre-normalized, demodulated, input gain) + filtered leaky ReLU; or the linear ToRGB."""

    def __init__(self, w_dim: int, spec: LayerSpec, conv_clamp: float | None):
        k = spec.kernel
        self.affine = Dense(w_dim, spec.in_channels)
        self.weight = nnx.Param(jnp.zeros((k, k, spec.in_channels, spec.out_channels)))
        self.bias = nnx.Param(jnp.zeros((spec.out_channels,)))
        self.magnitude_ema = Buffer(jnp.ones(()))
        if spec.up_taps > 1:
            self.up_filter = Buffer(jnp.zeros((spec.up_taps,)))
        if spec.down_taps > 1:
            shape = (spec.down_taps, spec.down_taps) if spec.down_radial else (spec.down_taps,)
            self.down_filter = Buffer(jnp.zeros(shape))
        self.spec, self.conv_clamp = spec, conv_clamp

    def __call__(self, x: jax.Array, w: jax.Array) -> jax.Array:
        spec = self.spec
        styles = self.affine(w)
        weight = self.weight[...]
        if spec.is_torgb:
            styles = styles / np.sqrt(spec.in_channels * spec.kernel**2)
        else:  # NVlabs pre-normalizes per output channel and the styles (here per image), then demodulates
            weight = weight * jax.lax.rsqrt(jnp.mean(jnp.square(weight), axis=(0, 1, 2), keepdims=True))
            styles = styles * jax.lax.rsqrt(jnp.mean(jnp.square(styles), axis=1, keepdims=True))
        x = x * (styles * jax.lax.rsqrt(self.magnitude_ema[...]))[:, None, None, :]
        pad = spec.kernel - 1
        x = jax.lax.conv_general_dilated(x, weight, (1, 1), ((pad, pad), (pad, pad)), dimension_numbers=_DN)
        if not spec.is_torgb:
            dcoefs = jax.lax.rsqrt(jnp.square(styles) @ jnp.sum(jnp.square(weight), axis=(0, 1)) + DEMODULATE_EPS)
            x = x * dcoefs[:, None, None, :]
        x = x + self.bias[...]
        up_filter = self.up_filter[...] if spec.up_taps > 1 else None
        x = upfirdn2d(x, up_filter, up=spec.up, padding=spec.padding, gain=spec.up**2)
        if spec.is_torgb:
            x = x if self.conv_clamp is None else jnp.clip(x, -self.conv_clamp, self.conv_clamp)
        else:
            x = bias_act(x, jnp.zeros((), x.dtype), self.conv_clamp, act=True)
        down_filter = self.down_filter[...] if spec.down_taps > 1 else None
        return upfirdn2d(x, down_filter, down=spec.down)


class Synthesis(nnx.Module):
    def __init__(self, config: Config):
        d = config.design()
        self.input = SynthesisInput(config.w_dim, int(d["channels"][0]), int(d["sizes"][0]), float(d["rates"][0]),
                                    float(d["cutoffs"][0]))
        for idx, spec in enumerate(config.layer_specs()):
            setattr(self, f"L{idx}", SynthesisLayer(config.w_dim, spec, config.conv_clamp))
        self.num_layers = config.num_layers
        self.output_scale = config.output_scale

    def __call__(self, wp: jax.Array) -> jax.Array:
        x = self.input(wp[:, 0])
        for idx in range(self.num_layers + 1):
            x = getattr(self, f"L{idx}")(x, wp[:, idx + 1])
        return x * self.output_scale if self.output_scale != 1 else x


def generator(config: Config) -> MappedGenerator:
    return MappedGenerator(config, Synthesis(config), config.num_ws)


def architecture(config: Config) -> Architecture:
    """StyleGAN3 as pure functions for `Generator` (spaces z, w, wp; z is normalized by the mapping itself)."""
    return mapped_architecture("stylegan3", bind(lambda rngs: generator(config)), config.resolution,
                               config.w_dim, config.num_ws, SPACES, lambda m, wp, key, mode: m.synthesis(wp),
                               truncation=(config.truncation_psi, config.truncation_cutoff))


def param_shapes(config: Config) -> tuple[dict, dict]:
    """Expected (params, buffers) shapes as pure dicts of ShapeDtypeStruct."""
    return bind(lambda rngs: generator(config)).shapes()

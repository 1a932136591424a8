"""The DCGAN face generator of `gan-face-generate` (PyTorch DCGAN tutorial layout), as flax.nnx."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from flax import nnx

from ifgan_jax.models.base import Architecture
from ifgan_jax.models.nnx_bind import bind

BN_EPS = 1e-5  # torch.nn.BatchNorm2d default
FIRST_SIZE = 4  # the first transposed conv turns the 1x1 latent into 4x4
KERNEL = 4  # every transposed conv is 4x4; the later ones use stride 2, padding 1
GEMM_MAX_IN_CHANNELS = 512  # up-sampling layers this narrow run as GEMM + overlap-add (see _transposed_conv)
# On CPU a batch runs in two stages (benchmarks/NOTES.md, finding 13): the dense layer and the first
# HEAD_LAYERS up-sampling layers on CPU_MICRO_BATCH images (their weights, 8 MiB for up1, are read once per
# 32 images instead of once per 8), the wide-activation tail in chunks of TAIL_BATCH that stay in cache.
CPU_MICRO_BATCH = 32
HEAD_LAYERS = 2
TAIL_BATCH = 8


@dataclasses.dataclass(frozen=True)
class Config:
    """Architecture of the DCGAN generator (defined by widths; resolution = 4 * 2**num_up)."""

    latent_dim: int = 100  # nz
    base_channels: int = 64  # ngf
    image_channels: int = 3  # nc
    num_up: int = 4  # stride-2 transposed convs after the first layer

    @property
    def resolution(self) -> int:
        return FIRST_SIZE * 2**self.num_up

    def widths(self) -> list[int]:
        """Channels after each transposed conv: ngf*8, ngf*4, ngf*2, ngf, nc."""
        hidden = [self.base_channels * 2 ** (self.num_up - 1 - i) for i in range(self.num_up)]
        return [*hidden, self.image_channels]


class BatchNorm(nnx.Module):
    """Inference-mode BatchNorm2d; folded into the preceding conv by `DCGANGenerator`."""

    def __init__(self, channels: int):
        self.scale = nnx.Param(jnp.ones((channels,)))
        self.bias = nnx.Param(jnp.zeros((channels,)))
        self.mean = nnx.BatchStat(jnp.zeros((channels,)))
        self.var = nnx.BatchStat(jnp.ones((channels,)))

    def folded(self) -> tuple[jax.Array, jax.Array]:
        """(multiplier, offset) so that bn(y) == y * multiplier + offset."""
        mult = self.scale[...] * jax.lax.rsqrt(self.var[...] + BN_EPS)
        return mult, self.bias[...] - self.mean[...] * mult


class DCGANGenerator(nnx.Module):
    """z (N, nz) -> image (N, 64, 64, nc) in [-1, 1], NHWC."""

    def __init__(self, config: Config):
        widths = config.widths()
        # First layer: ConvTranspose2d(nz, C0, 4, 1, 0) on a 1x1 input is a dense layer to 4x4xC0.
        self.dense_kernel = nnx.Param(jnp.zeros((config.latent_dim, FIRST_SIZE, FIRST_SIZE, widths[0])))
        self.bn0 = BatchNorm(widths[0])
        # Stride-2 transposed convs, stored as HWIO kernels of the equivalent dilated convolution.
        for i in range(1, config.num_up + 1):
            kernel = nnx.Param(jnp.zeros((KERNEL, KERNEL, widths[i - 1], widths[i])))
            setattr(self, f"up{i}_kernel", kernel)
            if i < config.num_up:
                setattr(self, f"bn{i}", BatchNorm(widths[i]))
        self.config = config

    def __call__(self, z: jax.Array, tail_batch: int = 0) -> jax.Array:
        """Images for z; with tail_batch, the layers after HEAD_LAYERS run as a loop over chunks of that size."""
        mult, offset = self.bn0.folded()
        # Fold BatchNorm into the weights: one multiply on the kernel instead of one per activation.
        kernel = self.dense_kernel[...] * mult
        x = jnp.einsum("nd,dhwc->nhwc", z, kernel) + offset
        x = jax.nn.relu(x)
        split = min(HEAD_LAYERS, self.config.num_up) if tail_batch else self.config.num_up
        for i in range(1, split + 1):
            x = self._up(i, x)
        n = x.shape[0]
        if split == self.config.num_up or n <= tail_batch or n % tail_batch:
            return self._tail(split, x)
        chunks = jax.lax.map(functools.partial(self._tail, split), x.reshape(n // tail_batch, tail_batch, *x.shape[1:]))
        return chunks.reshape(n, *chunks.shape[2:])

    def _tail(self, done: int, x: jax.Array) -> jax.Array:
        for i in range(done + 1, self.config.num_up + 1):
            x = self._up(i, x)
        return x

    def _up(self, i: int, x: jax.Array) -> jax.Array:
        kernel = getattr(self, f"up{i}_kernel")[...]
        if i == self.config.num_up:
            return jnp.tanh(upsample_conv(x, kernel))
        mult, offset = getattr(self, f"bn{i}").folded()
        return jax.nn.relu(upsample_conv(x, kernel * mult) + offset)


def _dilated_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    pad = KERNEL - 1 - 1  # k - 1 - torch padding
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(1, 1),
        padding=((pad, pad), (pad, pad)),
        lhs_dilation=(2, 2),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


def _overlap_add(taps: jax.Array, axis: int) -> jax.Array:
    """Combine the 4 kernel taps (axis `axis + 1`) of a stride-2, padding-1 transposed conv along `axis`.

    Output row 2j sums tap 1 of input row j and tap 3 of row j - 1; row 2j + 1 sums tap 2 of row j and
    tap 0 of row j + 1. Returns the rows interleaved as a new axis after `axis` (size 2).
    """
    def tap(k: int) -> jax.Array:
        return jnp.take(taps, k, axis=axis + 1)

    def shift(a: jax.Array, down: bool) -> jax.Array:  # a[j - 1] (down) or a[j + 1], zero-filled
        n = a.shape[axis]
        pad = [(0, 0)] * a.ndim
        pad[axis] = (1, 0) if down else (0, 1)
        kept = jax.lax.slice_in_dim(a, 0, n - 1, axis=axis) if down else jax.lax.slice_in_dim(a, 1, n, axis=axis)
        return jnp.pad(kept, pad)

    even = tap(1) + shift(tap(3), down=True)
    odd = tap(2) + shift(tap(0), down=False)
    return jnp.stack([even, odd], axis=axis + 1)


def _gemm_overlap_add(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The same transposed conv as one GEMM (every input pixel times all 16 taps) plus overlap-add."""
    n, h, w, cin = x.shape
    cout = kernel.shape[-1]
    taps = kernel[::-1, ::-1].transpose(2, 0, 1, 3).reshape(cin, KERNEL * KERNEL * cout)  # torch's tap order
    y = (x.reshape(n * h * w, cin) @ taps).reshape(n, h, w, KERNEL, KERNEL, cout).transpose(0, 1, 3, 2, 4, 5)
    y = _overlap_add(y, axis=1)  # (n, h, 4, w, 4, cout) -> (n, h, 2, w, 4, cout)
    y = _overlap_add(y, axis=3)  # (n, h, 2, w, 2, cout)
    return y.reshape(n, 2 * h, 2 * w, cout)


def _transposed_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    # XLA:CPU runs these layers faster as a GEMM + overlap-add (an N = 16 * Cout matmul instead of a conv with
    # 3 or 64 output channels); the dilated conv is kept for wider inputs (benchmarks/NOTES.md, 2 and 13).
    if x.shape[-1] <= GEMM_MAX_IN_CHANNELS:
        return _gemm_overlap_add(x, kernel)
    return _dilated_conv(x, kernel)


@jax.custom_vjp
def upsample_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """ConvTranspose2d(k=4, stride=2, padding=1); `kernel` is the HWIO kernel of the 2x-dilated-input conv."""
    return _transposed_conv(x, kernel)


def _upsample_conv_fwd(x: jax.Array, kernel: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    # Under differentiation (inversion) the GEMM form measured no faster (within noise), so the forward that
    # autodiff sees stays the plain dilated conv; both compute the same transposed conv.
    return _dilated_conv(x, kernel), (x, kernel)


def _upsample_conv_bwd(residuals: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array, jax.Array]:
    # Autodiff emits this same stride-2 convolution of g with the flipped kernel, but swaps the kernel's in/out
    # axes through the dimension numbers; XLA:CPU runs that layout slowly (value-and-grad 15.6 vs 5.0 ms per
    # image, benchmarks/NOTES.md). Swapping the axes in the array keeps the conv in plain HWIO.
    x, kernel = residuals
    flipped = jnp.flip(kernel, (0, 1)).swapaxes(2, 3)
    dx = jax.lax.conv_general_dilated(g, flipped, window_strides=(2, 2), padding=((1, 1), (1, 1)),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
    _, kernel_vjp = jax.vjp(lambda k: _dilated_conv(x, k), kernel)  # dead code (removed by XLA) for code-only grads
    return dx, kernel_vjp(g)[0]


upsample_conv.defvjp(_upsample_conv_fwd, _upsample_conv_bwd)


def architecture(config: Config) -> Architecture:
    """The DCGAN as pure functions for `Generator`."""
    bound = bind(lambda rngs: DCGANGenerator(config))

    def synthesize(params, buffers, codes, space, key=None, noise_mode=None, *, tail_batch=0):
        del key, noise_mode  # the DCGAN has no noise inputs
        if space != "z":
            raise ValueError(f"the DCGAN has only a Z space, not {space!r}")
        return bound.apply(params, buffers, lambda m, z: m(z, tail_batch), codes)

    return Architecture(
        family="dcgan",
        resolution=config.resolution,
        latent_dim=config.latent_dim,
        spaces=("z",),
        num_layers=0,
        normalize_z=False,
        synthesize=synthesize,
        cpu_micro_batch=CPU_MICRO_BATCH,
        cpu_synthesize=functools.partial(synthesize, tail_batch=TAIL_BATCH),
    )


def param_shapes(config: Config) -> tuple[dict, dict]:
    """Expected (params, buffers) shapes, used by the converter's shape check."""
    return bind(lambda rngs: DCGANGenerator(config)).shapes()

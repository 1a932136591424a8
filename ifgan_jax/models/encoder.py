"""The inversion encoder E: image (N, R, R, 3) in [-1, 1] -> latent code (N, *code_shape), as flax.nnx.

Why this net: a plain strided conv pyramid (the DCGAN discriminator's shape, thinner) with one residual 3x3
conv per scale. Each stage halves the resolution with a 4x4 stride-2 conv, so the depth is log2(R / 4)
stages and the same code serves a 64 px DCGAN (4 stages) and a 1024 px StyleGAN (8 stages); widths double
from `base_channels` up to `max_channels`, which keeps the cost of the large early maps small (at 64 px:
about 0.1 GFLOP per image, half the DCGAN generator it inverts). No normalization layers: a batch's codes
do not depend on its batch mates, inference is one fused conv chain XLA:CPU runs well, and there are no
running statistics to checkpoint. The head flattens the 4x4 map into a `hidden`-wide layer and predicts
the code in units of the latent spread around the latent mean (`ifgan_jax/inversion/encoder.py` adds them back), so
one set of initial weights suits Z (N(0, 1)), W and W+ codes (e4e's `w_avg + delta` for W+).
"""

from __future__ import annotations

import dataclasses
import math

import jax
from flax import nnx

from ifgan_jax.models.nnx_bind import BoundModule, bind

FINAL_SIZE = 4  # the pyramid stops at 4x4
LEAK = 0.2


@dataclasses.dataclass(frozen=True)
class Config:
    """Shape of an encoder: its input resolution, the code it predicts, and its widths."""

    resolution: int
    code_shape: tuple[int, ...]  # (d,) for Z / W, (L, d) for W+
    base_channels: int = 32
    max_channels: int = 128
    hidden: int = 256

    def __post_init__(self) -> None:
        r = self.resolution
        if r < 2 * FINAL_SIZE or r & (r - 1):
            raise ValueError(f"encoder resolution must be a power of two >= {2 * FINAL_SIZE}, got {r}")
        object.__setattr__(self, "code_shape", tuple(int(s) for s in self.code_shape))

    @property
    def num_stages(self) -> int:
        return int(math.log2(self.resolution // FINAL_SIZE))

    def widths(self) -> list[int]:
        """Channels after each stride-2 stage."""
        return [min(self.base_channels * 2**i, self.max_channels) for i in range(self.num_stages)]

    @property
    def code_size(self) -> int:
        return math.prod(self.code_shape)


class Encoder(nnx.Module):
    """images (N, R, R, 3) -> standardized codes (N, *code_shape): (code - center) / scale."""

    def __init__(self, config: Config, rngs: nnx.Rngs):
        self.config = config
        channels = 3
        for i, width in enumerate(config.widths()):
            setattr(self, f"down{i}", nnx.Conv(channels, width, (4, 4), strides=2, padding=((1, 1), (1, 1)),
                                               rngs=rngs))
            setattr(self, f"res{i}", nnx.Conv(width, width, (3, 3), padding="SAME", rngs=rngs))
            channels = width
        self.fc = nnx.Linear(FINAL_SIZE * FINAL_SIZE * channels, config.hidden, rngs=rngs)
        # Small output weights: a fresh encoder predicts codes near the latent mean.
        self.out = nnx.Linear(config.hidden, config.code_size, rngs=rngs,
                              kernel_init=nnx.initializers.normal(1e-2 / math.sqrt(config.hidden)))

    def __call__(self, images: jax.Array) -> jax.Array:
        x = images
        for i in range(self.config.num_stages):
            x = jax.nn.leaky_relu(getattr(self, f"down{i}")(x), LEAK)
            x = x + jax.nn.leaky_relu(getattr(self, f"res{i}")(x), LEAK)
        x = jax.nn.leaky_relu(self.fc(x.reshape(x.shape[0], -1)), LEAK)
        return self.out(x).reshape(x.shape[0], *self.config.code_shape)


def bound(config: Config) -> BoundModule:
    """The encoder's structure without weights (apply plain params dicts to it)."""
    return bind(lambda rngs: Encoder(config, rngs))


def init_params(config: Config, seed: int) -> dict:
    """Freshly initialized weights (a plain nested dict) from an integer seed."""
    params = nnx.state(Encoder(config, nnx.Rngs(seed)), nnx.Param)
    return nnx.to_pure_dict(params)


def encode(module: BoundModule, params: dict, images: jax.Array, center: jax.Array, scale: jax.Array) -> jax.Array:
    """Codes (N, *code_shape) for [-1, 1] images: center + scale * E(images)."""
    return center + scale * module.apply(params, {}, lambda m, x: m(x), images)


def flops_estimate(config: Config) -> float:
    """Multiply-adds x 2 of one forward pass (for documentation and benchmarks)."""
    total, channels, size = 0, 3, config.resolution
    for width in config.widths():
        size //= 2
        total += size * size * width * (channels * 16 + width * 9)
        channels = width
    total += FINAL_SIZE**2 * channels * config.hidden + config.hidden * config.code_size
    return 2.0 * total


__all__ = ["Config", "Encoder", "bound", "encode", "flops_estimate", "init_params"]

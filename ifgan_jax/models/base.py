"""The contract every generator family implements: pure functions over params/buffers pytrees."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

Params = dict[str, Any]  # nested dict of arrays (trainable weights)
Buffers = dict[str, Any]  # nested dict of arrays that are not trained (noise, w_avg, BN stats)

# synthesize(params, buffers, codes, space, key) -> images NHWC float32, raw output (about [-1, 1]).
# `space` is a static string; `key` is a PRNG key or None (used only by random noise).
SynthesizeFn = Callable[[Params, Buffers, jax.Array, str, jax.Array | None], jax.Array]
# mapping(params, buffers, z) -> w (untruncated); truncate(params, buffers, w, psi=None, cutoff=CONFIG_CUTOFF)
# -> wp, with psi (None: the config's) on the first `cutoff` layers (None: all; CONFIG_CUTOFF: the config's).
MappingFn = Callable[[Params, Buffers, jax.Array], jax.Array]
CONFIG_CUTOFF = -1


@dataclasses.dataclass(frozen=True)
class Architecture:
    """What a generator family exposes to `Generator`: static facts plus pure, jittable functions."""

    family: str  # "dcgan" | "pggan" | "stylegan"
    resolution: int  # output height == width
    latent_dim: int  # dimension of z (and of w for StyleGAN)
    spaces: tuple[str, ...]  # latent spaces synthesize accepts, e.g. ("z",) or ("z", "w", "wp")
    num_layers: int  # layers of a W+ code (0 when the family has no W+)
    normalize_z: bool  # InterFaceGAN rescales z to norm sqrt(d) for PGGAN/StyleGAN; the DCGAN does not
    synthesize: SynthesizeFn
    mapping: MappingFn | None = None
    truncate: MappingFn | None = None
    # CPU inference: images per Generator micro-batch (0: the Generator's default) and, where the family
    # stages its layers for the CPU cache, that staged synthesize (same images, used only without gradients).
    cpu_micro_batch: int = 0
    cpu_synthesize: SynthesizeFn | None = None

    def code_shape(self, space: str) -> tuple[int, ...]:
        """Shape of one latent code in `space` (without the batch axis)."""
        if space not in self.spaces:
            raise ValueError(f"space {space!r} is not one of {self.spaces} for {self.family}")
        return (self.num_layers, self.latent_dim) if space == "wp" else (self.latent_dim,)

"""The contract every generator family implements: pure functions over params/buffers pytrees."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Params = dict[str, Any]  # nested dict of arrays (trainable weights)
Buffers = dict[str, Any]  # nested dict of arrays that are not trained (noise, w_avg, BN stats)

SPACES = ("z", "w", "wp")  # every latent space a family may offer, in the order they are derived from z
NOISE_MODES = ("const", "random", "none")  # stored noise maps, fresh draws from a key, no noise
# synthesize(params, buffers, codes, space, key, noise_mode) -> images NHWC float32, raw output (about [-1, 1]).
# `space` is a static string; `key` is a PRNG key (or one per image) or None, used only by random noise;
# `noise_mode` is one of the family's `noise_modes`, or None for its config's.
SynthesizeFn = Callable[[Params, Buffers, jax.Array, str, jax.Array | None, str | None], jax.Array]
# mapping(params, buffers, z) -> w (untruncated); truncate(params, buffers, w, psi=None, cutoff=CONFIG_CUTOFF)
# -> wp, with psi (None: the config's) on the first `cutoff` layers (None: all; CONFIG_CUTOFF: the config's).
MappingFn = Callable[[Params, Buffers, jax.Array], jax.Array]
CONFIG_CUTOFF = -1


def normalize_z(z: jax.Array) -> jax.Array:
    """InterFaceGAN's Z preprocessing for PGGAN and StyleGAN: rescale each code to norm sqrt(d)."""
    z = jnp.asarray(z, dtype=jnp.float32)
    norm = jnp.linalg.norm(z, axis=-1, keepdims=True)
    return z / norm * jnp.sqrt(jnp.float32(z.shape[-1]))


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
    noise_modes: tuple[str, ...] = ()  # the noise modes synthesize takes; () for a family without noise inputs
    truncation: tuple[float, int | None] | None = None  # the config's (psi, cutoff layers; None: all), if any

    @property
    def has_mapping(self) -> bool:
        return self.mapping is not None

    def codes_from_z(self, params: Params, buffers: Buffers, z: jax.Array, space: str) -> jax.Array:
        """Traceable: the codes of `space` for Z codes, as `sample` writes them (z normalized where the family
        says, mapped, truncated with the config's settings for W+)."""
        self.code_shape(space)
        if space == "z":
            return z
        if self.mapping is None or self.truncate is None:
            raise ValueError(f"{self.family} has no mapping network to derive {space!r} codes from z")
        if self.normalize_z:
            z = normalize_z(z)
        w = self.mapping(params, buffers, z)
        return self.truncate(params, buffers, w) if space == "wp" else w

    def code_shape(self, space: str) -> tuple[int, ...]:
        """Shape of one latent code in `space` (without the batch axis)."""
        if space not in self.spaces:
            raise ValueError(f"space {space!r} is not one of {self.spaces} for {self.family}")
        return (self.num_layers, self.latent_dim) if space == "wp" else (self.latent_dim,)


def mapped_architecture(family: str, bound: Any, resolution: int, w_dim: int, num_ws: int, spaces: tuple[str, ...],
                        synthesis: Callable[[Any, jax.Array, jax.Array | None, str | None], jax.Array], *,
                        normalize_z: bool = False, noise_modes: tuple[str, ...] = (),
                        truncation: tuple[float, int | None] | None = None) -> Architecture:
    """The `Architecture` of a bound generator module (models/nnx_bind.py) with `mapping(z)`,
    `truncate(w, psi, cutoff)` and `synthesis(m, wp, key, noise_mode)`: z -> mapping -> truncation -> synthesis
    (StyleGAN, StyleGAN2, StyleGAN3). normalize_z: the caller rescales z first (InterFaceGAN's StyleGAN)."""

    def mapping(params, buffers, z):
        return bound.apply(params, buffers, lambda m, z: m.mapping(z), z)

    def truncate(params, buffers, w, psi: float | None = None, cutoff: int | None = CONFIG_CUTOFF):
        """W+ codes; psi / cutoff default to the config's (cutoff None: every layer)."""
        return bound.apply(params, buffers, lambda m, w: m.truncate(w, psi, cutoff), w)

    def synthesize(params, buffers, codes, space, key=None, noise_mode=None):
        if space not in spaces:
            raise ValueError(f"{family} spaces are {spaces}, not {space!r}")

        def run(m: Any, codes: jax.Array) -> jax.Array:
            x = codes
            if space == "z":
                x = m.mapping(x)
            if space in ("z", "w"):
                x = m.truncate(x)
            return synthesis(m, x, key, noise_mode)

        return bound.apply(params, buffers, run, codes)

    return Architecture(family=family, resolution=resolution, latent_dim=w_dim, spaces=spaces, num_layers=num_ws,
                        normalize_z=normalize_z, synthesize=synthesize, mapping=mapping, truncate=truncate,
                        noise_modes=noise_modes, truncation=truncation)

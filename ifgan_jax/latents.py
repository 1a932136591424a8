"""Deterministic latent codes: sample i depends only on (seed, i), whatever the batch or device count."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ifgan_jax.errors import InputError

MAX_SEED = 2**32  # seeds are uint32
# Noise keys of sample i are the latent key of i folded with this, a stream apart from the code's own draw.
NOISE_STREAM = 1
# Codes are drawn in aligned blocks of this many indices, always by the same compiled program, so a
# row's bytes never depend on how a caller batches its requests.
BLOCK = 1024


@functools.partial(jax.jit, static_argnums=(2,))
def _block(seed: jax.Array, block_index: jax.Array, dim: int) -> jax.Array:
    base = jax.random.key(seed)
    indices = block_index * BLOCK + jnp.arange(BLOCK, dtype=jnp.uint32)
    keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(indices)
    return jax.vmap(lambda k: jax.random.normal(k, (dim,), dtype=jnp.float32))(keys)


def check_seed(seed: object, name: str = "seed") -> int:
    """A seed as an int in [0, 2**32), or an InputError naming `name` (a flag's spelling where the CLI calls)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < MAX_SEED:
        raise InputError(f"{name} must be in [0, 2**32), got {str(seed)[:40]}", argument=name)
    return int(seed)


def noise_keys(seed: int, start: int, count: int) -> jax.Array:
    """PRNG keys (count,) of the random noise of sample indices [start, start + count): index i's depends
    only on (seed, i), like its code."""
    check_seed(seed)
    base = jax.random.key(seed)
    indices = jnp.arange(start, start + count, dtype=jnp.uint32)
    return jax.vmap(lambda i: jax.random.fold_in(jax.random.fold_in(base, i), NOISE_STREAM))(indices)


def sample_latents(seed: int, start: int, count: int, dim: int) -> np.ndarray:
    """Standard-normal codes for indices [start, start + count): (count, dim) float32."""
    if count < 0 or start < 0:
        raise InputError(f"start and count must be >= 0, got start={start}, count={count}")
    check_seed(seed)
    out = np.empty((count, dim), dtype=np.float32)
    stop = start + count
    first, last = start // BLOCK, (stop - 1) // BLOCK if count else start // BLOCK - 1
    cpu = jax.local_devices(backend="cpu")[0]  # the same backend everywhere keeps the bytes identical on any host
    with jax.default_device(cpu):
        seed_arr = jnp.uint32(seed)
        for b in range(first, last + 1):
            block = np.asarray(_block(seed_arr, jnp.uint32(b), dim))
            lo, hi = max(start, b * BLOCK), min(stop, (b + 1) * BLOCK)
            out[lo - start : hi - start] = block[lo - b * BLOCK : hi - b * BLOCK]
    return out



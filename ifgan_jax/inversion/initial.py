"""Starting points of an inversion: the latent statistics, seeded initial codes, and StyleGAN noise maps.

Every random draw is keyed by the user's seed, a stream tag and (per image) a hash of the image's pixels, so
an image's start never depends on its batch mates or position. Draws run on the CPU: the same bytes on any
backend.
"""

from __future__ import annotations

import hashlib
import math
import re
import weakref
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ifgan_jax.errors import InputError
from ifgan_jax.generator import Generator

MEAN_SAMPLES = 10_000  # mapped samples behind the mean W / W+ code
MEAN_SEED = 123  # fixed, so 'mean' init does not depend on the user's seed
MAX_POOL = 1 << 16
STATS_CHUNK = 1024  # codes mapped per call for the statistics and pools (fixed: the bits depend on it)
SELECT_RESOLUTION = 64  # best-of-K compares images at most this large (area-downsampled)
POOL_CHUNK = 64
# Streams folded into the user's seed: pool and random init codes must never equal the codes that
# `sample --seed S` writes (inverting its images would then be trivial), and must differ from each other.
TAG_POOL, TAG_RANDOM, TAG_NOISE = 0x1A5E_0001, 0x1A5E_0002, 0x1A5E_0003

# Latent statistics and best-of-K pools per generator.
_STATS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def parse_init(init: str) -> tuple[str, int]:
    """'mean' | 'random' | 'encoder' | 'best-of-K' -> (kind, K); InputError for anything else."""
    if init in ("mean", "random", "encoder"):
        return init, 0
    m = re.fullmatch(r"best-of-(\d+)", init or "")
    if not m or not 1 <= int(m.group(1)) <= MAX_POOL:
        raise InputError(f"init must be 'mean', 'random', 'encoder' or 'best-of-K' (1 <= K <= {MAX_POOL}), "
                         f"got {init!r}")
    return "best-of", int(m.group(1))


def _cache(G: Generator) -> dict:
    return _STATS.setdefault(G, {})


def _cpu_normal(seed: int, tags: tuple[int, ...], count: int, dim: int) -> np.ndarray:
    with jax.default_device(jax.local_devices(backend="cpu")[0]):  # the same bytes on any backend
        key = jax.random.key(np.uint32(seed))
        for tag in tags:
            key = jax.random.fold_in(key, np.uint32(tag))
        return np.asarray(jax.random.normal(key, (count, dim), jnp.float32))


def latent_stats(G: Generator, space: str) -> tuple[np.ndarray, float]:
    """(mean code, spread) of `space`: for W/W+ over 10,000 mapped samples, for Z the prior (0, sqrt(d)).

    The spread is NVlabs' w_std, the RMS distance of a sample to the mean (per layer for W+).
    """
    cache = _cache(G)
    if ("stats", space) not in cache:
        shape = G.code_shape(space)
        if space == "z":
            cache["stats", space] = (np.zeros(shape, np.float32), math.sqrt(shape[-1]))
        else:
            z = _cpu_normal(MEAN_SEED, (), MEAN_SAMPLES, G.latent_dim)
            codes = G.codes_from_z(z, space, chunk=STATS_CHUNK).astype(np.float64)
            mean = codes.mean(axis=0)
            layers = shape[0] if space == "wp" else 1
            spread = math.sqrt(float(np.sum(np.square(codes - mean)) / len(codes) / layers))
            cache["stats", space] = (mean.astype(np.float32), spread)
    return cache["stats", space]


def _small(images: np.ndarray) -> np.ndarray:
    """Flattened float64 images at most SELECT_RESOLUTION px, for best-of-K distances."""
    x = np.asarray(images, np.float32)
    res = x.shape[1]
    if res > SELECT_RESOLUTION:
        f = res // SELECT_RESOLUTION
        x = x.reshape(len(x), SELECT_RESOLUTION, f, SELECT_RESOLUTION, f, 3).mean(axis=(2, 4))
    return x.reshape(len(x), -1).astype(np.float64)


def _pool(G: Generator, space: str, seed: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes, small flattened images, their squared norms) of the seeded best-of-K candidate pool."""
    cache = _cache(G)
    key = ("pool", space, seed, count)
    if key not in cache:
        z = _cpu_normal(seed, (TAG_POOL,), count, G.latent_dim)
        codes = G.codes_from_z(z, space, chunk=STATS_CHUNK)
        smalls = [_small(np.asarray(G.synthesize(codes[i : i + POOL_CHUNK], space)))
                  for i in range(0, count, POOL_CHUNK)]
        small = np.concatenate(smalls)
        for old in [k for k in cache if k[0] == "pool"]:
            del cache[old]  # pools are large: keep only the latest
        cache[key] = (codes, small, np.sum(small * small, axis=1))
    return cache[key]


def initial_codes(G: Generator, targets: np.ndarray, space: str, init: str, seed: int,
                  hashes: np.ndarray | None = None, encoder: Any = None) -> np.ndarray:
    """Starting codes (N, *code_shape) for float [-1, 1] targets; see plan.py for defaults.

    init 'encoder' needs `encoder` (an inversion.encoder.Encoder checked for G and space; make_plan resolves it).
    """
    kind, k = parse_init(init)
    n = len(targets)
    shape = G.code_shape(space)
    if kind == "encoder":
        if encoder is None:
            raise InputError("init 'encoder' needs an encoder (make_plan(..., encoder=DIR) or the shipped one)")
        return np.asarray(encoder.encode(targets, G.mesh), np.float32)
    if kind == "mean":
        if space == "z" and G.normalize_z:
            raise InputError(f"init 'mean' is undefined in the normalized Z space of {G.name} (the mean code "
                             "has no direction); use best-of-K or random, or invert in W")
        mean, _ = latent_stats(G, space)
        return np.broadcast_to(mean, (n, *shape)).astype(np.float32)
    if kind == "random":
        hashes = image_hashes(targets) if hashes is None else hashes
        z = np.zeros((n, G.latent_dim), np.float32)
        for i, h in enumerate(hashes):
            z[i] = _cpu_normal(seed, (TAG_RANDOM, int(h)), 1, G.latent_dim)[0]
        return G.codes_from_z(z, space, chunk=STATS_CHUNK).astype(np.float32)
    codes, pool, pool_sq = _pool(G, space, seed, k)
    t = _small(targets)
    # |t - p|^2 = |t|^2 + |p|^2 - 2 t.p; |t|^2 is the same for every candidate of a row.
    best = np.argmin(pool_sq[None, :] - 2.0 * (t @ pool.T), axis=1)
    return np.asarray(codes[best], np.float32)


def image_hashes(images: np.ndarray) -> np.ndarray:
    """uint32 per image from its float32 pixels: the per-image key of every random draw."""
    arr = np.ascontiguousarray(images, np.float32)
    return np.array([int.from_bytes(hashlib.sha256(a.tobytes()).digest()[:4], "little") for a in arr],
                    dtype=np.uint32)


# -- StyleGAN noise maps -------------------------------------------------------------------------------


def leaf_name(path: tuple) -> str:
    """'a/b/noise' for a pytree key path."""
    return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def flat_buffers(buffers: dict) -> dict[str, Any]:
    """{leaf name: leaf} of a buffers pytree."""
    return {leaf_name(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(buffers)[0]}


def noise_paths(buffers: dict) -> list[str]:
    """Names ('a/b/noise') of the per-layer constant noise maps a StyleGAN keeps in its buffers."""
    return [name for name, leaf in flat_buffers(buffers).items()
            if name.rsplit("/", 1)[-1] == "noise" and np.ndim(leaf) == 2]


def initial_noise_maps(G: Generator, n: int) -> dict[str, np.ndarray]:
    """The model's own noise maps, one copy per image: {name: (n, R, R)}."""
    names = noise_paths(G.buffers)
    flat = {name: leaf for name, leaf in flat_buffers(G.buffers).items() if name in names}
    return {name: np.broadcast_to(np.asarray(m, np.float32), (n, *m.shape)) for name, m in flat.items()}

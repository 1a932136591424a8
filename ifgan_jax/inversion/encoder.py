"""Inversion encoders: load / save / apply a trained encoder E (image -> code); training is in training.py.

An encoder directory holds `encoder.json` (model, space, architecture, training settings, the sha256 of its
arrays) and `arrays/` (an orbax checkpoint of {params, center, scale}: codes are center + scale * net(x),
center and scale being the generator's latent mean and per-element spread, see models/encoder.py).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ifgan_jax import files, parallel
from ifgan_jax.errors import InputError
from ifgan_jax.generator import Generator
from ifgan_jax.inversion.initial import latent_stats
from ifgan_jax.models import encoder as enc_model

FORMAT_VERSION = 1
MANIFEST = "encoder.json"
ARRAYS = "arrays"
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "data" / "encoders"
CPU_MICRO_BATCH = 32  # images per chunk of an encoding pass on CPU (activations stay in cache)


# -- a trained encoder ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Encoder:
    """A trained encoder for one generator and space; `encode(images)` -> codes. Hashed by identity."""

    config: enc_model.Config
    params: dict
    center: np.ndarray  # (*code_shape,) latent mean
    scale: np.ndarray  # () per-element latent spread
    model: str  # the generator's name it was trained for
    space: str
    manifest: dict
    path: str | None = None

    @functools.cached_property
    def module(self) -> Any:
        return enc_model.bound(self.config)

    @property
    def arrays(self) -> dict[str, Any]:
        return {"params": self.params, "center": self.center, "scale": self.scale}

    def check_for(self, G: Generator, space: str) -> None:
        """InputError unless this encoder was trained for G's name, resolution and `space`."""
        where = f"encoder {self.path or '(in memory)'}"
        if self.model != G.name:
            raise InputError(f"{where} was trained for model {self.model!r}, not {G.name!r}")
        if self.space != space:
            raise InputError(f"{where} was trained for the {self.space!r} space, not {space!r}")
        if self.config.resolution != G.resolution or self.config.code_shape != G.code_shape(space):
            raise InputError(f"{where} expects {self.config.resolution} px images and codes of shape "
                             f"{self.config.code_shape}; {G.name} has {G.resolution} px and "
                             f"{G.code_shape(space)}")

    def apply(self, arrays: dict, images: jax.Array) -> jax.Array:
        """Traceable: codes for [-1, 1] images with the given arrays (use inside a jit)."""
        return enc_model.encode(self.module, arrays["params"], images, arrays["center"], arrays["scale"])

    def encode(self, images: Any, mesh: Any = None, micro_batch: int | None = None) -> jax.Array:
        """Codes (N, *code_shape) for float [-1, 1] images (N, R, R, 3), on device, sharded over `mesh`."""
        mesh = mesh or parallel.data_mesh(1)
        on_cpu = mesh.devices.flat[0].platform == "cpu"
        micro = (CPU_MICRO_BATCH if on_cpu else 0) if micro_batch is None else int(micro_batch)
        images = jnp.asarray(images, jnp.float32)
        n, unit = images.shape[0], mesh.devices.size * max(micro, 1)
        size = -(-max(n, 1) // unit) * unit
        if size != n:
            images = jnp.concatenate([images, jnp.zeros((size - n, *images.shape[1:]), jnp.float32)])
        images = jax.device_put(images, NamedSharding(mesh, P(parallel.DATA_AXIS)))
        arrays = jax.device_put(self.arrays, NamedSharding(mesh, P()))
        return _encode_program(self.config, mesh, micro)(arrays, images)[:n]


@functools.lru_cache(maxsize=16)
def _encode_program(config: enc_model.Config, mesh: Any, micro: int) -> Any:
    """The jitted encoding pass for an architecture (weights are arguments: encoders of one shape share it)."""
    module = enc_model.bound(config)

    def apply(arrays, x):
        return enc_model.encode(module, arrays["params"], x, arrays["center"], arrays["scale"])

    def local(arrays, images):
        n = images.shape[0]
        if not micro or n <= micro:
            return apply(arrays, images)
        chunks = images.reshape(n // micro, micro, *images.shape[1:])
        out = jax.lax.map(lambda x: apply(arrays, x), chunks)
        return out.reshape(n, *out.shape[2:])

    if mesh.devices.size == 1:
        return jax.jit(local)
    return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(), P(parallel.DATA_AXIS)),
                                 out_specs=P(parallel.DATA_AXIS)))


def new_encoder(G: Generator, space: str, seed: int, **widths: int) -> Encoder:
    """A freshly initialized encoder for G's `space` (widths: base_channels, max_channels, hidden)."""
    if space not in G.spaces:
        raise InputError(f"{G.name} has no {space!r} space (spaces: {', '.join(G.spaces)})")
    try:
        config = enc_model.Config(G.resolution, G.code_shape(space), **widths)
    except ValueError as err:
        raise InputError(str(err)) from None
    center, spread = latent_stats(G, space)
    scale = np.float32(spread / math.sqrt(config.code_shape[-1]))
    return Encoder(config, enc_model.init_params(config, seed), np.asarray(center, np.float32),
                   np.asarray(scale, np.float32), G.name, space, {})


def arrays_sha256(arrays: dict) -> str:
    """sha256 over every array's path, dtype, shape and bytes, in sorted path order (what encoder.json records)."""
    h = hashlib.sha256()
    flat = jax.tree_util.tree_flatten_with_path(arrays)[0]
    for path, leaf in sorted(flat, key=lambda kv: jax.tree_util.keystr(kv[0])):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{jax.tree_util.keystr(path)}:{a.dtype.str}:{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_encoder(directory: str | os.PathLike, encoder: Encoder, extra: dict[str, Any] | None = None) -> Path:
    """Write `encoder` into `directory` (arrays/ replaced via a temp dir, then encoder.json, written last)."""
    directory = Path(directory).absolute()
    directory.mkdir(parents=True, exist_ok=True)
    arrays = jax.tree.map(np.asarray, encoder.arrays)
    manifest = {"format_version": FORMAT_VERSION, "model": encoder.model, "space": encoder.space,
                "config": {**dataclasses.asdict(encoder.config), "code_shape": list(encoder.config.code_shape)},
                "arrays_sha256": arrays_sha256(arrays), **(extra or {})}
    (directory / MANIFEST).unlink(missing_ok=True)  # no manifest: the directory holds no usable encoder
    tmp = Path(tempfile.mkdtemp(prefix=f".{ARRAYS}.", dir=directory))
    try:
        with ocp.StandardCheckpointer() as ckpt:
            ckpt.save(tmp / ARRAYS, arrays)
        shutil.rmtree(directory / ARRAYS, ignore_errors=True)
        os.replace(tmp / ARRAYS, directory / ARRAYS)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    files.atomic_write_json(directory / MANIFEST, manifest)
    return directory


# Loaded encoders by (directory, encoder.json's mtime and size): one object per directory version, so
# repeated `invert(..., init="encoder")` calls neither re-read nor re-hash the arrays.
_LOADED: dict[tuple, Encoder] = {}


def load_encoder(directory: str | os.PathLike) -> Encoder:
    """An encoder directory -> Encoder; InputError when missing, unreadable, or its arrays' sha256 differs."""
    directory = Path(directory).absolute()
    try:
        stat = (directory / MANIFEST).stat()
        key = (str(directory), stat.st_mtime_ns, stat.st_size)
    except OSError:
        key = None
    if key in _LOADED:
        return _LOADED[key]
    encoder = _read_encoder(directory)
    if key is not None:
        _LOADED[key] = encoder
    return encoder


def _read_encoder(directory: Path) -> Encoder:
    manifest = files.read_json(directory / MANIFEST)
    if not isinstance(manifest, dict):
        what = "does not exist" if not directory.exists() else f"has no readable {MANIFEST}"
        raise InputError(f"encoder directory {directory} {what}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{directory / MANIFEST}: unsupported encoder format {manifest.get('format_version')!r}")
    try:
        config = enc_model.Config(**{**manifest["config"], "code_shape": tuple(manifest["config"]["code_shape"])})
        model, space = str(manifest["model"]), str(manifest["space"])
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"{directory / MANIFEST} is damaged ({type(err).__name__}: {err})") from None
    try:
        with ocp.StandardCheckpointer() as ckpt:
            arrays = ckpt.restore(directory / ARRAYS)
    except Exception as err:  # orbax raises many types for a damaged directory
        raise InputError(f"encoder {directory}: cannot read its arrays ({type(err).__name__})") from None
    arrays = jax.tree.map(np.asarray, arrays)
    if arrays_sha256(arrays) != manifest.get("arrays_sha256"):
        raise InputError(f"encoder {directory}: its arrays do not match the sha256 in {MANIFEST} (damaged?)")
    shapes = jax.tree.map(lambda s: tuple(s.shape), enc_model.bound(config).shapes()[0])
    if jax.tree.map(np.shape, arrays.get("params")) != shapes:
        raise InputError(f"encoder {directory}: its arrays do not fit the architecture in {MANIFEST}")
    return Encoder(config, arrays["params"], arrays["center"], arrays["scale"], model, space, manifest,
                   str(directory))


def shipped_encoder_dir(model: str, space: str) -> Path | None:
    """The encoder shipped in the package for `model` and `space`, or None."""
    if not SHIPPED_DIR.is_dir():
        return None
    for candidate in sorted(SHIPPED_DIR.iterdir()):
        manifest = files.read_json(candidate / MANIFEST)
        if isinstance(manifest, dict) and manifest.get("model") == model and manifest.get("space") == space:
            return candidate
    return None


def resolve_encoder(G: Generator, space: str, encoder: Encoder | str | os.PathLike | None) -> Encoder:
    """An Encoder for G's `space`: the given one (object or directory), or the model's shipped one; checked."""
    if encoder is None:
        directory = shipped_encoder_dir(G.name, space)
        if directory is None:
            raise InputError(f"encoder: none is shipped for {G.name} in the {space!r} space; train one "
                             f"(run.py train-encoder -m {G.name} --space {space} -o DIR) and give its folder",
                             argument="encoder")
        encoder = directory
    if not isinstance(encoder, Encoder):
        encoder = load_encoder(encoder)
    encoder.check_for(G, space)
    return encoder

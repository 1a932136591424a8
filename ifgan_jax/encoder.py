"""Inversion encoders: load / save / apply a trained encoder E (image -> code), and its jitted training step.

An encoder directory holds `encoder.json` (model, space, architecture, training settings, the sha256 of its
arrays) and `arrays/` (an orbax checkpoint of {params, center, scale}: codes are center + scale * net(x),
center and scale being the generator's latent mean and per-element spread, see models/encoder.py).

Training (`make_train_step`, driven by ifgan_jax/jobs/train_encoder.py) draws its pairs on the fly: step k
takes Z codes `G.sample_latents(train_seed, k * B, B)` (train_seed derived from the user's seed, so they are
never the codes `sample --seed S` writes), maps them into the space inside the jitted step, synthesizes
x = G(code) and fits E on: code regression |E(x) - code|^2 (in units of the latent spread) + pixel
reconstruction |G(E(x)) - x|^2 (+ LPIPS with VGG16 weights, + the pixel loss on real photos when given, as
idinvert's domain-guided encoder). Nothing is stored; the data of step k depends only on (seed, k), so a
resumed run is the same run.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ifgan_jax import files, latents, parallel
from ifgan_jax.errors import InputError
from ifgan_jax.generator import Generator
from ifgan_jax.inversion_init import latent_stats
from ifgan_jax.models import encoder as enc_model
from ifgan_jax.models.vgg16 import lpips_distance, lpips_features

FORMAT_VERSION = 1
MANIFEST = "encoder.json"
ARRAYS = "arrays"
SHIPPED_DIR = Path(__file__).resolve().parent / "data" / "encoders"
CPU_MICRO_BATCH = 32  # images per chunk of an encoding pass on CPU (activations stay in cache)
WARMUP_FRACTION = 0.02
FINAL_LR_FRACTION = 0.02
# Compiled training steps per generator (see make_train_step).
_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


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
        if self.config.resolution != G.resolution or self.config.code_shape != G.arch.code_shape(space):
            raise InputError(f"{where} expects {self.config.resolution} px images and codes of shape "
                             f"{self.config.code_shape}; {G.name} has {G.resolution} px and "
                             f"{G.arch.code_shape(space)}")

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
        config = enc_model.Config(G.resolution, G.arch.code_shape(space), **widths)
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
            raise InputError(f"no encoder is shipped for {G.name} in the {space!r} space; train one "
                             f"(run.py train-encoder -m {G.name} --space {space} -o DIR) and pass --encoder DIR")
        encoder = directory
    if not isinstance(encoder, Encoder):
        encoder = load_encoder(encoder)
    encoder.check_for(G, space)
    return encoder


# -- training ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """The settings of one training run (everything that fixes its result)."""

    space: str
    steps: int
    batch_size: int
    lr: float
    seed: int
    code_weight: float = 1.0
    pixel_weight: float = 10.0
    perceptual_weight: float = 0.0  # with VGG16 weights
    real_weight: float = 0.0  # pixel (+ perceptual) loss on real photos, with a real-image set
    real_batch: int = 0
    pixel_batch: int = 0  # images of each batch that also get the pixel loss (0: all)


def derived_seed(seed: int, stream: str) -> int:
    """A uint32 seed for a named stream of the user's seed (training data never equals `sample`'s codes)."""
    return int.from_bytes(hashlib.sha256(f"ifgan-encoder:{stream}:{int(seed)}".encode()).digest()[:4], "little")


def train_latents(G: Generator, settings: TrainSettings, step: int) -> np.ndarray:
    """The Z codes of training step `step` (0-based): depends only on (seed, step, batch size)."""
    b = settings.batch_size
    return G.sample_latents(derived_seed(settings.seed, "train"), step * b, b)


def lr_schedule(settings: TrainSettings) -> optax.Schedule:
    """Linear warm-up over WARMUP_FRACTION of the steps, then cosine decay to FINAL_LR_FRACTION of lr."""
    warmup = max(1, int(WARMUP_FRACTION * settings.steps))
    return optax.warmup_cosine_decay_schedule(0.0, settings.lr, warmup, max(settings.steps, warmup + 1),
                                              settings.lr * FINAL_LR_FRACTION)


def optimizer(settings: TrainSettings) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(lr_schedule(settings), b2=0.99))


def codes_from_z(G: Generator, params: Any, buffers: Any, z: jax.Array, space: str) -> jax.Array:
    """Traceable: codes in `space` for Z codes, as `sample` writes them (mapping, truncation for W+)."""
    if space == "z":
        return z
    arch = G.arch
    w = arch.mapping(params, buffers, latents.normalize_z(z) if arch.normalize_z else z)
    return arch.truncate(params, buffers, w) if space == "wp" else w


def make_train_step(G: Generator, encoder: Encoder, settings: TrainSettings, vgg: Any = None) -> Any:
    """The jitted, data-sharded step: (state, consts, z, real) -> (state, metrics); state = {params, opt_state}.

    Built once per (G, architecture, settings, VGG16): a resumed or repeated run in one process reuses it.
    """
    programs = _STEPS.setdefault(G, {})
    key = (encoder.config, settings, vgg)
    if key not in programs:
        programs[key] = _build_train_step(G, encoder, settings, vgg)
    return programs[key]


def _build_train_step(G: Generator, encoder: Encoder, settings: TrainSettings, vgg: Any) -> Any:
    """The step of `make_train_step`.

    The update is skipped (state unchanged) when the loss or a gradient is not finite; metrics["finite"]
    says so. (A scan over gradient micro-batches, which helps inference on CPU, measured 20x slower here.)
    """
    arch, space, opt = G.arch, settings.space, optimizer(settings)
    on_cpu = G.mesh.devices.flat[0].platform == "cpu"
    data_synthesize = arch.cpu_synthesize if on_cpu and arch.cpu_synthesize else arch.synthesize  # no gradient
    pixel_batch = settings.pixel_batch or settings.batch_size
    module = encoder.module
    code_axes = tuple(range(1, 1 + len(encoder.config.code_shape)))
    use_real = settings.real_weight > 0 and settings.real_batch > 0

    def reconstruction(gparams, gbuffers, vgg_params, recon, target):
        loss = jnp.mean(jnp.square(recon - target), axis=(1, 2, 3))
        if settings.perceptual_weight and vgg_params is not None:
            d = lpips_distance(vgg_params, lpips_features(vgg_params, recon), lpips_features(vgg_params, target))
            loss = loss + settings.perceptual_weight / max(settings.pixel_weight, 1e-12) * d
        return loss

    def batch_losses(params, consts, z, real):
        # Sums over the batch's images of each loss term (per-image means).
        gparams, gbuffers, center, scale, vgg_params = consts
        code = jax.lax.stop_gradient(codes_from_z(G, gparams, gbuffers, z, space))
        x = jax.lax.stop_gradient(data_synthesize(gparams, gbuffers, code, space, None))
        pred = enc_model.encode(module, params, x, center, scale)
        code_loss = jnp.mean(jnp.square((pred - code) / scale), axis=code_axes)
        terms = {"code": jnp.sum(code_loss)}
        if settings.pixel_weight:
            # The pixel loss on the first pixel_batch images of the batch (backprop through G is the cost).
            k = max(1, pixel_batch * z.shape[0] // settings.batch_size)
            recon = arch.synthesize(gparams, gbuffers, pred[:k], space, None)
            pixel = reconstruction(gparams, gbuffers, vgg_params, recon, x[:k])
            mse = jnp.mean(jnp.square(jnp.clip(recon, -1, 1) - x[:k]), axis=(1, 2, 3))
            terms["pixel"] = jnp.sum(pixel) * (z.shape[0] / k)
            terms["mse"] = jnp.sum(mse) * (z.shape[0] / k)
        if use_real:
            pred_r = enc_model.encode(module, params, real, center, scale)
            recon_r = arch.synthesize(gparams, gbuffers, pred_r, space, None)
            terms["real"] = jnp.sum(reconstruction(gparams, gbuffers, vgg_params, recon_r, real))
        return terms

    def weighted(terms, n, n_real):
        total = settings.code_weight * terms["code"] / n
        if settings.pixel_weight:
            total += settings.pixel_weight * terms["pixel"] / n
        if use_real:
            total += settings.real_weight * settings.pixel_weight * terms["real"] / n_real
        return total

    def grads_and_terms(params, consts, z, real):
        n, n_real = z.shape[0], (real.shape[0] if use_real else 1)

        def loss(p):
            terms = batch_losses(p, consts, z, real)
            return weighted(terms, n, n_real), terms

        (_, terms), grads = jax.value_and_grad(loss, has_aux=True)(params)
        return grads, terms

    def step(state, consts, z, real):
        grads, terms = grads_and_terms(state["params"], consts, z, real)
        n = z.shape[0]
        metrics = {k: v / n for k, v in terms.items() if k != "real"}
        if use_real:
            metrics["real"] = terms["real"] / real.shape[0]
        metrics["loss"] = settings.code_weight * metrics["code"] + settings.pixel_weight * metrics.get("pixel", 0.0)
        if use_real:
            metrics["loss"] += settings.real_weight * settings.pixel_weight * metrics["real"]
        finite = jnp.isfinite(metrics["loss"])
        for g in jax.tree.leaves(grads):
            finite &= jnp.all(jnp.isfinite(g))
        updates, opt_state = opt.update(grads, state["opt_state"], state["params"])
        new = {"params": optax.apply_updates(state["params"], updates), "opt_state": opt_state}
        state = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, state)
        return state, {**metrics, "finite": finite}

    rep, batch = NamedSharding(G.mesh, P()), NamedSharding(G.mesh, P(parallel.DATA_AXIS))
    return jax.jit(step, in_shardings=(rep, rep, batch, batch if use_real else rep),
                   out_shardings=(rep, rep), donate_argnums=(0,))


def train_constants(G: Generator, encoder: Encoder, vgg: Any = None) -> tuple:
    """The non-trained inputs of the step: generator params/buffers, latent center/scale, VGG16 params."""
    rep = NamedSharding(G.mesh, P())
    return (G.params, G.buffers, jax.device_put(jnp.asarray(encoder.center), rep),
            jax.device_put(jnp.asarray(encoder.scale), rep),
            jax.device_put(vgg.params, rep) if vgg is not None else None)


def initial_state(encoder: Encoder, settings: TrainSettings) -> dict:
    params = jax.tree.map(lambda a: jnp.array(a, copy=True), encoder.params)  # the step donates its state
    return {"params": params, "opt_state": optimizer(settings).init(params)}


def evaluate(G: Generator, encoder: Encoder, images: np.ndarray) -> dict[str, Any]:
    """Encoder-only reconstruction of float [-1, 1] images: codes, recon (device arrays) and per-image mse."""
    codes = encoder.encode(images, G.mesh)
    recon = G.synthesize(codes, encoder.space)
    mse = jnp.mean(jnp.square(jnp.clip(recon, -1.0, 1.0) - jnp.asarray(images)), axis=(1, 2, 3))
    return {"codes": codes, "recon": recon, "mse": np.asarray(mse)}


def eval_images(G: Generator, seed: int, count: int, space: str) -> np.ndarray:
    """Held-out in-domain images (never training data) as float [-1, 1], quantized to uint8 like PNGs."""
    z = G.sample_latents(derived_seed(seed, "eval"), 0, count)
    if space == "z":
        images = G.synthesize_uint8(z)
    else:
        w = G.mapping(z)
        images = G.synthesize_uint8(G.truncate(w) if space == "wp" else w, space)
    return np.asarray(images).astype(np.float32) / np.float32(127.5) - np.float32(1.0)

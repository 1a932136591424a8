"""GAN inversion: optimize latent codes (and optionally StyleGAN noise) so the generator reproduces images.

The whole optimization of a batch is one compiled program (a `lax.while_loop` over steps, sharded over
`G.mesh` by image); optax drives the updates. Every per-image quantity (optimizer state, latent noise,
noise renormalization, early stop, NaN handling) is computed per image, and the objective is the *sum* of
per-image losses, so an image's result does not depend on its batch mates or its position in the batch:
random draws are keyed by `seed` and a hash of the image's pixels, not by an index. (Up to float32
rounding: XLA picks kernel blockings by batch shape, a ~1e-7 difference that a long run at lr 0.1 can
amplify into a nearby optimum of similar quality; a fixed batch layout is bit-for-bit reproducible.)

Defaults per space (measured on dcgan_digiface, see benchmarks/results/invert_cpu.json):

- ``z``: init ``best-of-256`` (the closest of 256 seeded samples by pixel MSE), Adam at lr 0.1, 1000 steps,
  codes projected back to the sqrt(d) sphere after every step, no latent noise. Tuning on 16 DCGAN images
  (mean / min PSNR, dB): the defaults 41.6 / 25.6. Without the sphere: best-of-256 39.6 / 23.2,
  best-of-1024 40.9 / 25.2, 500 steps 32.6 / 22.9, mean init (z = 0) 14.3 / 10.7, latent noise 0.05
  28.1 / 19.1. The sphere frees images stuck in poor minima although the DCGAN's own codes are not
  normalized; the mean code z = 0 has no direction on it (and is a poor start anyway).
- ``w`` / ``wp``: init ``mean`` (the mean of 10,000 mapped samples), lr 0.1, latent noise from 0.05 * the
  samples' spread ramped to 0 over 75% of the run: NVlabs' projector settings, not tuned here.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import os
import re
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ifgan_jax import parallel
from ifgan_jax.errors import InputError
from ifgan_jax.generator import Generator

SPACES = ("z", "w", "wp")
DEFAULT_STEPS = 1000
DEFAULT_LR = {"z": 0.1, "w": 0.1, "wp": 0.1}
DEFAULT_INIT = {"z": "best-of-256", "w": "mean", "wp": "mean"}
# NVlabs' projector: initial latent noise = 0.05 * spread of the mapped samples, gone by 75% of the run.
DEFAULT_INITIAL_NOISE = {"z": 0.0, "w": 0.05, "wp": 0.05}
NOISE_RAMP = 0.75
LR_RAMPUP = 0.05  # linear warm-up over the first 5% of the steps
LR_RAMPDOWN = 0.25  # cosine decay to 0 over the last 25%
DEFAULT_BATCH = 32
# Images per fixed-shape step loop on CPU: value-and-grad measured fastest at 16 (8: +10%, 32: +10-40%).
CPU_MICRO_BATCH = 16
NOISE_WEIGHT = 1e5  # NVlabs' regularize_noise_weight
MEAN_SAMPLES = 10_000  # mapped samples behind the mean W / W+ code
MEAN_SEED = 123  # fixed, so 'mean' init does not depend on the user's seed
MAX_POOL = 1 << 16
SELECT_RESOLUTION = 64  # best-of-K compares images at most this large (area-downsampled)
POOL_CHUNK = 64
LOSSES = ("mse", "lpips", "mse+lpips")
# Streams folded into the user's seed: pool and random init codes must never equal the codes that
# `sample --seed S` writes (inverting its images would then be trivial), and must differ from each other.
_TAG_POOL, _TAG_RANDOM, _TAG_NOISE = 0x1A5E_0001, 0x1A5E_0002, 0x1A5E_0003

# -- VGG16 / LPIPS ------------------------------------------------------------------------------------

VGG16_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)  # torchvision `vgg16().features` indices
_POOL_AFTER = (1, 3, 6, 9)  # conv positions followed by 2x2 max-pooling (the fifth pool is never used)
_TAPS = (1, 3, 6, 9, 12)  # LPIPS taps: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
# LPIPS' ScalingLayer: inputs in [-1, 1] -> the ImageNet normalization VGG16 was trained with.
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)
VGG_MAX_RESOLUTION = 256  # larger images are area-downsampled first, as NVlabs' projector
VGG_MIN_RESOLUTION = 16  # below this the fourth pooling leaves no pixels for relu5_3


@dataclasses.dataclass(frozen=True, eq=False)
class VGG16:
    """Converted VGG16 conv weights (HWIO) and optional LPIPS linear heads, for the perceptual loss."""

    params: dict  # {"conv": [(kernel (3, 3, in, out), bias (out,)), ...13], "lin": [(C,), ...5] or []}
    source: str

    @property
    def has_lin(self) -> bool:
        return bool(self.params["lin"])


def load_vgg16(path: str | os.PathLike, lpips_lin: str | os.PathLike | None = None) -> VGG16:
    """A torchvision VGG16 state dict (.pth; `features.N.weight/bias`) and optional LPIPS heads -> VGG16.

    The heads are LPIPS' `lin{k}.model.{0,1}.weight` (1, C, 1, 1); they may also live in the VGG16 file.
    Channel counts are read from the file, so narrower synthetic weights work the same way.
    """
    state = _read_state_dict(path)
    name = Path(path).name
    convs, in_ch = [], 3
    for pos, idx in enumerate(VGG16_CONVS):
        w, b = state.get(f"features.{idx}.weight"), state.get(f"features.{idx}.bias")
        if w is None or b is None:
            raise InputError(f"{name}: not a torchvision VGG16 state dict (no features.{idx}.weight/bias)")
        if w.ndim != 4 or w.shape[1:] != (in_ch, 3, 3) or b.shape != (w.shape[0],):
            raise InputError(f"{name}: features.{idx} has shape {w.shape} / {b.shape}; expected "
                             f"(out, {in_ch}, 3, 3) / (out,) for conv {pos} of VGG16")
        # torch OIHW cross-correlation -> HWIO for lax.conv (also a cross-correlation: no flip).
        convs.append((np.ascontiguousarray(w.transpose(2, 3, 1, 0), np.float32), np.asarray(b, np.float32)))
        in_ch = w.shape[0]
    lin_state = state if lpips_lin is None else _read_state_dict(lpips_lin)
    lin = []
    for k, pos in enumerate(_TAPS):
        w = lin_state.get(f"lin{k}.model.1.weight", lin_state.get(f"lin{k}.model.0.weight"))
        if w is None:
            if lpips_lin is not None:
                raise InputError(f"{Path(lpips_lin).name}: no LPIPS head lin{k}.model.1.weight")
            break
        channels = convs[pos][0].shape[-1]
        if w.size != channels:
            raise InputError(f"LPIPS head lin{k} has {w.size} weights for {channels} VGG16 channels")
        lin.append(np.asarray(w, np.float32).reshape(channels))
    if lin and len(lin) != len(_TAPS):
        raise InputError(f"{name}: found {len(lin)} of the {len(_TAPS)} LPIPS heads")
    return VGG16({"conv": convs, "lin": lin}, source=str(path))


def _read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    from converters import read_torch_checkpoint
    from converters.torch_checkpoint import flatten_state_dict
    from ifgan_jax.errors import CheckpointError

    if not Path(path).is_file():
        raise InputError(f"weights file {path} does not exist")
    try:
        obj = read_torch_checkpoint(path)
        if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
            obj = obj["state_dict"]
        flat = flatten_state_dict(obj)
    except CheckpointError as err:
        raise InputError(str(err)) from None
    # nn.DataParallel checkpoints prefix every key with "module.".
    return {k.removeprefix("module."): v for k, v in flat.items()}


def vgg16_features(params: dict, images: jax.Array) -> list[jax.Array]:
    """LPIPS' five VGG16 feature maps (after ReLU) of [-1, 1] NHWC images."""
    shift = jnp.asarray(_LPIPS_SHIFT, jnp.float32)
    scale = jnp.asarray(_LPIPS_SCALE, jnp.float32)
    x = (images - shift) / scale
    feats = []
    for pos, (kernel, bias) in enumerate(params["conv"]):
        x = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        x = jax.nn.relu(x + bias)
        if pos in _TAPS:
            feats.append(x)
        if pos in _POOL_AFTER:
            x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    return feats


def _unit_channels(feat: jax.Array) -> jax.Array:
    # LPIPS' normalize_tensor: unit length over channels at every pixel (eps as LPIPS).
    return feat / (jnp.sqrt(jnp.sum(feat * feat, axis=-1, keepdims=True)) + 1e-10)


def lpips_features(params: dict, images: jax.Array) -> list[jax.Array]:
    """Channel-normalized VGG16 features (images larger than 256 px are area-downsampled first)."""
    res = images.shape[1]
    if res > VGG_MAX_RESOLUTION:
        images = _area_downsample(images, VGG_MAX_RESOLUTION)
    return [_unit_channels(f) for f in vgg16_features(params, images)]


def lpips_distance(params: dict, feats_a: list[jax.Array], feats_b: list[jax.Array]) -> jax.Array:
    """Per-image LPIPS-style distance (N,): per layer, head-weighted squared differences, spatial mean."""
    total = 0.0
    for k, (fa, fb) in enumerate(zip(feats_a, feats_b, strict=True)):
        d = jnp.square(fa - fb)
        d = d * params["lin"][k] if params["lin"] else d  # without heads: the plain channel sum
        total = total + jnp.mean(jnp.sum(d, axis=-1), axis=(1, 2))
    return total


def _area_downsample(images: jax.Array, size: int) -> jax.Array:
    n, h, w, c = images.shape
    if h == size:
        return images
    f = h // size
    return images.reshape(n, size, f, size, f, c).mean(axis=(2, 4))


# -- schedule, losses ---------------------------------------------------------------------------------


def lr_schedule(lr: float, steps: int, rampup: float = LR_RAMPUP, rampdown: float = LR_RAMPDOWN) -> optax.Schedule:
    """NVlabs' projector schedule: linear warm-up over `rampup`, cosine decay to 0 over the last `rampdown`."""

    def schedule(count: jax.Array) -> jax.Array:
        t = jnp.asarray(count, jnp.float32) / steps
        ramp = jnp.minimum(1.0, (1.0 - t) / rampdown) if rampdown > 0 else jnp.float32(1.0)
        ramp = 0.5 - 0.5 * jnp.cos(ramp * jnp.pi)
        if rampup > 0:
            ramp = ramp * jnp.minimum(1.0, t / rampup)
        return lr * ramp

    return schedule


def psnr(mse: np.ndarray | jax.Array) -> np.ndarray:
    """PSNR in dB of [-1, 1] images (peak-to-peak 2), the same as 8-bit PSNR without quantization."""
    mse = np.asarray(mse, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (10.0 * np.log10(4.0 / mse)).astype(np.float32)


def parse_init(init: str) -> tuple[str, int]:
    """'mean' | 'random' | 'best-of-K' -> (kind, K); InputError for anything else."""
    if init in ("mean", "random"):
        return init, 0
    m = re.fullmatch(r"best-of-(\d+)", init or "")
    if not m or not 1 <= int(m.group(1)) <= MAX_POOL:
        raise InputError(f"init must be 'mean', 'random' or 'best-of-K' (1 <= K <= {MAX_POOL}), got {init!r}")
    return "best-of", int(m.group(1))


# -- result --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class InversionResult:
    """Codes in `space` and per-image metrics; arrays are numpy, in input order."""

    codes: np.ndarray  # (N, *code_shape) float32, ready for `synthesize(codes, space)`
    reconstructions: np.ndarray  # (N, H, W, 3) float32 raw generator output
    mse: np.ndarray  # (N,) pixel MSE of the clipped reconstruction, on [-1, 1] images
    psnr: np.ndarray  # (N,) dB, peak-to-peak 2
    loss: np.ndarray  # (N,) final objective without latent noise (inf/NaN for failed images)
    steps: np.ndarray  # (N,) int32 optimizer steps applied to the image
    failed: np.ndarray  # (N,) bool: the loss or update went non-finite; the code is the last finite one
    space: str
    init: str
    noise: dict[str, np.ndarray] | None = None  # per-image StyleGAN noise maps (N, R, R) when optimized
    timings: dict[str, float] = dataclasses.field(default_factory=dict)  # compile_s, run_s (wall)

    def __len__(self) -> int:
        return len(self.codes)


# -- plan and compiled runner --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Plan:
    """Everything static about one compiled inversion (hashable: the compile cache key)."""

    space: str
    steps: int
    lr: float | None
    optimizer: Any  # an optax GradientTransformation (hashed by identity) or None for the default Adam
    loss: Any  # one of LOSSES or a callable (recon, target) -> (N,)
    perceptual_weight: float
    noise_std: float  # initial per-element latent noise
    noise_ramp: float
    sphere: bool
    latent_weight: float
    optimize_noise: bool
    noise_weight: float
    stop_loss: float | None
    micro_batch: int


# Compiled programs per generator: {plan: (jitted runner, {padded size: compiled})}.
_RUNNERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# Latent statistics and best-of-K pools per generator.
_STATS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _select(mask: jax.Array, new: Any, old: Any) -> Any:
    """Per-image where over pytrees whose leaves all lead with the batch axis."""
    def pick(a, b):
        return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)
    return jax.tree.map(pick, new, old)


def _all_finite(tree: Any, n: int) -> jax.Array:
    ok = jnp.ones((n,), bool)
    for leaf in jax.tree.leaves(tree):
        ok &= jnp.all(jnp.isfinite(leaf.reshape(n, -1)), axis=1)
    return ok


def _noise_regularizer(maps: dict[str, jax.Array]) -> jax.Array:
    """NVlabs' multiscale noise regularizer of one image: squared autocorrelation at 1 px, per octave."""
    total = jnp.float32(0.0)
    for m in maps.values():
        x = m
        while True:
            total += jnp.mean(x * jnp.roll(x, 1, axis=1)) ** 2 + jnp.mean(x * jnp.roll(x, 1, axis=0)) ** 2
            if x.shape[0] <= 8:
                break
            h, w = x.shape
            x = x.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    return total


def _noise_paths(buffers: dict) -> list[str]:
    """Names ('a/b/noise') of the per-layer constant noise maps a StyleGAN keeps in its buffers."""
    return [name for name, leaf in _flat_buffers(buffers).items()
            if name.rsplit("/", 1)[-1] == "noise" and np.ndim(leaf) == 2]


def _leaf_name(path: tuple) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def _flat_buffers(buffers: dict) -> dict[str, Any]:
    return {_leaf_name(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(buffers)[0]}


def _with_noise(buffers: dict, noise: dict[str, jax.Array]) -> dict:
    """`buffers` with the named noise leaves replaced (per-image (n, R, R) maps)."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(buffers)
    leaves = [noise.get(_leaf_name(path), leaf) for path, leaf in flat]
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _build_runner(G: Generator, plan: _Plan) -> Callable:
    """The jitted, sharded program: init optimizer, step loop, final clean evaluation."""
    arch = G.arch
    code_shape = arch.code_shape(plan.space)
    code_axes = tuple(range(1, 1 + len(code_shape)))
    normalize = plan.space == "z" and arch.normalize_z
    uses_lpips = isinstance(plan.loss, str) and "lpips" in plan.loss
    uses_mse = isinstance(plan.loss, str) and "mse" in plan.loss
    d = code_shape[-1]

    if plan.optimizer is None:
        optimizer = optax.adam(lr_schedule(plan.lr, plan.steps))
    else:
        optimizer = plan.optimizer

    def data_loss(vgg, recon, targets, tfeats):
        if callable(plan.loss):
            return plan.loss(recon, targets)
        total = jnp.zeros((recon.shape[0],), jnp.float32)
        if uses_mse:
            total += jnp.mean(jnp.square(recon - targets), axis=(1, 2, 3))
        if uses_lpips:
            weight = plan.perceptual_weight if uses_mse else 1.0
            total += weight * lpips_distance(vgg, lpips_features(vgg, recon), tfeats)
        return total

    def objective(params, buffers, vgg, center, v, latent_noise, targets, tfeats):
        code = v["code"]
        x = code + latent_noise
        if normalize:
            x = x * (jnp.sqrt(jnp.float32(d)) / jnp.linalg.norm(x, axis=-1, keepdims=True))
        bufs = _with_noise(buffers, v["noise"]) if plan.optimize_noise else buffers
        recon = arch.synthesize(params, bufs, x, plan.space, None)
        losses = data_loss(vgg, recon, targets, tfeats)
        if plan.latent_weight:
            losses += plan.latent_weight * jnp.mean(jnp.square(code - center), axis=code_axes)
        if plan.optimize_noise:
            losses += plan.noise_weight * jax.vmap(_noise_regularizer)(v["noise"])
        return losses, recon

    def chunked(fn, n, *trees):
        # One micro-batch at a time (see `local`); images never mix.
        micro = plan.micro_batch
        if not micro or n % micro:
            return fn(*trees)
        k = n // micro
        split = jax.tree.map(lambda a: a.reshape(k, micro, *a.shape[1:]), trees)
        out = jax.lax.map(lambda args: fn(*args), split)
        return jax.tree.map(lambda a: a.reshape(n, *a.shape[2:]), out)

    def project(v):
        if plan.sphere:
            code = v["code"]
            v = {**v, "code": code * (jnp.sqrt(jnp.float32(d)) / jnp.linalg.norm(code, axis=-1, keepdims=True))}
        if plan.optimize_noise:
            def renorm(m):  # per image and map: zero mean, unit variance (NVlabs)
                m = m - m.mean(axis=(1, 2), keepdims=True)
                return m * jax.lax.rsqrt(jnp.mean(jnp.square(m), axis=(1, 2), keepdims=True))
            v = {**v, "noise": {k: renorm(m) for k, m in v["noise"].items()}}
        return v

    def solve(params, buffers, vgg, center, seed, codes0, noise0, targets, hashes, active0):
        # The whole optimization of one micro-batch (CPU) or of the device's batch (accelerators).
        n = codes0.shape[0]
        tfeats = lpips_features(vgg, targets) if uses_lpips else []
        v0 = {"code": codes0, "noise": noise0} if plan.optimize_noise else {"code": codes0}
        opt_state0 = jax.vmap(optimizer.init)(v0)
        base = jax.random.fold_in(jax.random.key(seed), _TAG_NOISE)
        keys = jax.vmap(lambda h: jax.random.fold_in(base, h))(hashes)

        def latent_noise(step):
            if not plan.noise_std:
                return jnp.zeros_like(codes0)
            t = step.astype(jnp.float32) / plan.steps
            scale = plan.noise_std * jnp.square(jnp.maximum(0.0, 1.0 - t / plan.noise_ramp))
            draw = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, step), code_shape))(keys)
            return draw * scale

        def value_grad(v, ln, tg, tf):
            def total(v):
                losses, _ = objective(params, buffers, vgg, center, v, ln, tg, tf)
                return jnp.sum(losses), losses
            (_, losses), grads = jax.value_and_grad(total, has_aux=True)(v)
            return losses, grads

        def cond(carry):
            step, _, _, active, _, _ = carry
            return (step < plan.steps) & jnp.any(active)

        def body(carry):
            step, v, opt_state, active, failed, done_steps = carry
            losses, grads = value_grad(v, latent_noise(step), targets, tfeats)
            finite = jnp.isfinite(losses) & _all_finite(grads, n)
            updates, new_state = jax.vmap(optimizer.update)(grads, opt_state, v)
            new_v = project(optax.apply_updates(v, updates))
            finite &= _all_finite(new_v, n)
            reached = (losses <= plan.stop_loss) if plan.stop_loss is not None else jnp.zeros((n,), bool)
            move = active & finite & ~reached
            return (step + 1, _select(move, new_v, v), _select(move, new_state, opt_state), move,
                    failed | (active & ~finite), done_steps + move.astype(jnp.int32))

        carry = (jnp.int32(0), project(v0), opt_state0, active0, jnp.zeros((n,), bool), jnp.zeros((n,), jnp.int32))
        _, v, _, _, failed, done_steps = jax.lax.while_loop(cond, body, carry)

        losses, recon = objective(params, buffers, vgg, center, v, jnp.zeros_like(v["code"]), targets, tfeats)
        mse = jnp.mean(jnp.square(jnp.clip(recon, -1.0, 1.0) - targets), axis=(1, 2, 3))
        out = {"codes": v["code"], "recon": recon, "loss": losses, "mse": mse, "steps": done_steps,
               "failed": failed}
        if plan.optimize_noise:
            out["noise"] = v["noise"]
        return out

    def local(params, buffers, vgg, center, codes0, noise0, targets, hashes, active0, seed):
        # Micro-batches run one after another, each its whole step loop: activations stay in cache, and
        # every image runs in a program of one fixed shape, so its result does not depend on the batch.
        per_chunk = functools.partial(solve, params, buffers, vgg, center, seed)
        return chunked(per_chunk, codes0.shape[0], codes0, noise0, targets, hashes, active0)

    if G.num_devices == 1:
        return jax.jit(local)
    batch, rep = P(parallel.DATA_AXIS), P()
    # Each device runs its own step loop on its images (no collectives), so the loop carry mixes
    # replicated and per-device values; the varying-axes type check would reject that without cause.
    sharded = jax.shard_map(local, mesh=G.mesh, in_specs=(rep, rep, rep, rep, batch, batch, batch, batch, batch, rep),
                            out_specs=batch, check_vma=False)
    return jax.jit(sharded)


# -- initial codes ---------------------------------------------------------------------------------------


def _cache(G: Generator) -> dict:
    return _STATS.setdefault(G, {})


def _cpu_normal(seed: int, tags: tuple[int, ...], count: int, dim: int) -> np.ndarray:
    with jax.default_device(jax.local_devices(backend="cpu")[0]):  # the same bytes on any backend
        key = jax.random.key(np.uint32(seed))
        for tag in tags:
            key = jax.random.fold_in(key, np.uint32(tag))
        return np.asarray(jax.random.normal(key, (count, dim), jnp.float32))


def _z_to_space(G: Generator, z: np.ndarray, space: str, chunk: int = 1024) -> np.ndarray:
    """Codes in `space` for Z codes (mapping and truncation as `sample` writes them)."""
    if space == "z":
        return z
    out = []
    for i in range(0, len(z), chunk):
        w = G.mapping(z[i : i + chunk])
        out.append(np.asarray(G.truncate(w) if space == "wp" else w))
    return np.concatenate(out)


def latent_stats(G: Generator, space: str) -> tuple[np.ndarray, float]:
    """(mean code, spread) of `space`: for W/W+ over 10,000 mapped samples, for Z the prior (0, sqrt(d)).

    The spread is NVlabs' w_std, the RMS distance of a sample to the mean (per layer for W+).
    """
    cache = _cache(G)
    if ("stats", space) not in cache:
        shape = G.arch.code_shape(space)
        if space == "z":
            cache["stats", space] = (np.zeros(shape, np.float32), math.sqrt(shape[-1]))
        else:
            z = _cpu_normal(MEAN_SEED, (), MEAN_SAMPLES, G.latent_dim)
            codes = _z_to_space(G, z, space).astype(np.float64)
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
        z = _cpu_normal(seed, (_TAG_POOL,), count, G.latent_dim)
        codes = _z_to_space(G, z, space)
        smalls = [_small(np.asarray(G.synthesize(codes[i : i + POOL_CHUNK], space)))
                  for i in range(0, count, POOL_CHUNK)]
        small = np.concatenate(smalls)
        for old in [k for k in cache if k[0] == "pool"]:
            del cache[old]  # pools are large: keep only the latest
        cache[key] = (codes, small, np.sum(small * small, axis=1))
    return cache[key]


def initial_codes(G: Generator, targets: np.ndarray, space: str, init: str, seed: int,
                  hashes: np.ndarray | None = None) -> np.ndarray:
    """Starting codes (N, *code_shape) for float [-1, 1] targets; see the module docstring for defaults."""
    kind, k = parse_init(init)
    n = len(targets)
    shape = G.arch.code_shape(space)
    if kind == "mean":
        if space == "z" and G.arch.normalize_z:
            raise InputError(f"init 'mean' is undefined in the normalized Z space of {G.name} (the mean code "
                             "has no direction); use best-of-K or random, or invert in W")
        mean, _ = latent_stats(G, space)
        return np.broadcast_to(mean, (n, *shape)).astype(np.float32)
    if kind == "random":
        hashes = image_hashes(targets) if hashes is None else hashes
        z = np.zeros((n, G.latent_dim), np.float32)
        for i, h in enumerate(hashes):
            z[i] = _cpu_normal(seed, (_TAG_RANDOM, int(h)), 1, G.latent_dim)[0]
        return _z_to_space(G, z, space).astype(np.float32)
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


# -- public entry ---------------------------------------------------------------------------------------


def check_targets(G: Generator, images: Any) -> np.ndarray:
    """uint8 or float [-1, 1] images (N, R, R, 3) at the model's resolution -> float32; InputError otherwise."""
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    r = G.resolution
    if arr.ndim != 4 or arr.shape[1:] != (r, r, 3):
        raise InputError(f"images for {G.name} must have shape (N, {r}, {r}, 3), got {arr.shape}; "
                         "ifgan_jax.images.load_images crops and resizes")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    if not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"images must be uint8 or float in [-1, 1], got dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise InputError("images contain NaN or infinite values")
    return arr


def make_plan(G: Generator, space: str = "z", *, steps: int | None = None, lr: float | None = None,
              optimizer: Any = None, loss: Any = None, vgg16: VGG16 | None = None,
              perceptual_weight: float = 1.0, initial_noise: float | None = None, noise_ramp: float = NOISE_RAMP,
              sphere: bool | None = None, latent_weight: float = 0.0, optimize_noise: bool = False,
              noise_weight: float = NOISE_WEIGHT, stop_loss: float | None = None,
              micro_batch: int | None = None) -> _Plan:
    """Validate settings and resolve per-space defaults (the static part of `invert`)."""
    if micro_batch is None:  # CPU (the generator micro-batches): CPU_MICRO_BATCH; accelerators: whole batch
        micro_batch = CPU_MICRO_BATCH if G.micro_batch else 0
    if micro_batch < 0:
        raise InputError(f"micro batch must be >= 0, got {micro_batch}")
    if space not in G.spaces:
        raise InputError(f"{G.name} has no {space!r} space (spaces: {', '.join(G.spaces)})")
    steps = DEFAULT_STEPS if steps is None else int(steps)
    if steps < 1:
        raise InputError(f"steps must be >= 1, got {steps}")
    if optimizer is not None:
        if lr is not None:
            raise InputError("lr applies to the default Adam only; put the learning rate in the optimizer")
        if not hasattr(optimizer, "init") or not hasattr(optimizer, "update"):
            raise InputError("optimizer must be an optax GradientTransformation")
    else:
        lr = DEFAULT_LR[space] if lr is None else float(lr)
        if not (math.isfinite(lr) and lr > 0):
            raise InputError(f"lr must be a positive number, got {lr}")
    if loss is None:
        loss = "mse+lpips" if vgg16 is not None else "mse"
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise InputError(f"loss must be one of {LOSSES} or a callable, got {loss!r}")
        if "lpips" in loss:
            if vgg16 is None:
                raise InputError(f"loss {loss!r} needs VGG16 weights (torchvision vgg16 .pth, --vgg16 FILE)")
            if G.resolution < VGG_MIN_RESOLUTION:
                raise InputError(f"the perceptual loss needs images of at least {VGG_MIN_RESOLUTION} px")
    elif not callable(loss):
        raise InputError(f"loss must be one of {LOSSES} or a callable, got {type(loss).__name__}")
    if optimize_noise:
        if not _noise_paths(G.buffers):
            raise InputError(f"{G.name} has no noise inputs to optimize")
        if space == "z":
            raise InputError("noise optimization needs the W or W+ space")
    _, spread = latent_stats(G, space)
    factor = DEFAULT_INITIAL_NOISE[space] if initial_noise is None else float(initial_noise)
    if factor < 0 or not 0 < noise_ramp <= 1:
        raise InputError("initial_noise must be >= 0 and noise_ramp in (0, 1]")
    if sphere is None:
        sphere = space == "z"
    if sphere and space != "z":
        raise InputError("sphere projection applies to Z codes only")
    return _Plan(space=space, steps=steps, lr=lr, optimizer=optimizer, loss=loss,
                 perceptual_weight=float(perceptual_weight), noise_std=factor * spread,
                 noise_ramp=float(noise_ramp), sphere=bool(sphere), latent_weight=float(latent_weight),
                 optimize_noise=bool(optimize_noise), noise_weight=float(noise_weight),
                 stop_loss=None if stop_loss is None else float(stop_loss), micro_batch=int(micro_batch))


def invert(
    G: Generator,
    images: Any,
    space: str = "z",
    *,
    steps: int | None = None,
    lr: float | None = None,
    optimizer: Any = None,
    loss: str | Callable | None = None,
    init: str | None = None,
    seed: int = 0,
    initial_noise: float | None = None,
    noise_ramp: float = NOISE_RAMP,
    batch_size: int | None = None,
    vgg16: VGG16 | str | os.PathLike | None = None,
    perceptual_weight: float = 1.0,
    latent_weight: float = 0.0,
    sphere: bool | None = None,
    optimize_noise: bool = False,
    noise_weight: float = NOISE_WEIGHT,
    stop_loss: float | None = None,
    progress: Callable[[int], None] | None = None,
    micro_batch: int | None = None,
) -> InversionResult:
    """Find codes in `space` whose images match `images` (uint8 or [-1, 1] float, (N, R, R, 3)).

    steps/lr: the default Adam with NVlabs' lr ramp (an `optimizer` brings its own lr; see `lr_schedule`).
    loss: 'mse', 'lpips', 'mse+lpips' (default with vgg16) or callable(recon, target) -> per-image (N,),
    which must not mix images. init: 'mean' | 'random' | 'best-of-K' (default per space, DEFAULT_INIT).
    initial_noise/noise_ramp: latent noise of initial_noise * spread, decaying to 0 at noise_ramp of the run.
    sphere: project Z codes to norm sqrt(d) after each step (default for z). latent_weight: weight of the
    mean squared distance to the mean code. optimize_noise: StyleGAN noise
    maps too (with NVlabs' regularizer, weight noise_weight). stop_loss: an image stops when its loss is
    below it. progress(k) is called after each batch of k images. micro_batch: images per fixed-shape step loop
    (default CPU_MICRO_BATCH on CPU, the whole batch on accelerators; 1 is fastest for lone images).
    """
    targets = check_targets(G, images)
    if not 0 <= int(seed) < 2**32:
        raise InputError(f"seed must be in [0, 2**32), got {seed}")
    if isinstance(vgg16, (str, os.PathLike)):
        vgg16 = load_vgg16(vgg16)
    plan = make_plan(G, space, steps=steps, lr=lr, optimizer=optimizer, loss=loss, vgg16=vgg16,
                     perceptual_weight=perceptual_weight, initial_noise=initial_noise, noise_ramp=noise_ramp,
                     sphere=sphere, latent_weight=latent_weight, optimize_noise=optimize_noise,
                     noise_weight=noise_weight, stop_loss=stop_loss, micro_batch=micro_batch)
    init = DEFAULT_INIT[space] if init is None else init
    if parse_init(init)[0] == "mean" and plan.sphere:
        raise InputError("init 'mean' (z = 0) has no direction on the Z sphere; use best-of-K or random "
                         "(or sphere=False)")
    batch_size = DEFAULT_BATCH if batch_size is None else int(batch_size)
    if batch_size < 1:
        raise InputError(f"batch size must be >= 1, got {batch_size}")

    parts, timings = [], {"compile_s": 0.0, "run_s": 0.0, "init_s": 0.0}
    for start in range(0, len(targets), batch_size):
        batch = targets[start : start + batch_size]
        part = _invert_batch(G, plan, batch, init, int(seed), vgg16, timings)
        parts.append(part)
        if progress is not None:
            progress(len(batch))
    shape = G.arch.code_shape(space)
    r = G.resolution
    empty = {"codes": np.zeros((0, *shape), np.float32), "recon": np.zeros((0, r, r, 3), np.float32),
             "loss": np.zeros(0, np.float32), "mse": np.zeros(0, np.float32), "steps": np.zeros(0, np.int32),
             "failed": np.zeros(0, bool)}
    merged = {k: np.concatenate([p[k] for p in parts]) if parts else v for k, v in empty.items()}
    noise = None
    if plan.optimize_noise and parts:
        noise = {k: np.concatenate([p["noise"][k] for p in parts]) for k in parts[0]["noise"]}
    return InversionResult(codes=merged["codes"], reconstructions=merged["recon"], mse=merged["mse"],
                           psnr=psnr(merged["mse"]), loss=merged["loss"], steps=merged["steps"],
                           failed=merged["failed"], space=space, init=init, noise=noise, timings=timings)


def _padded_size(G: Generator, plan: _Plan, n: int) -> int:
    """Rows the batch runs at: whole micro-batches per device when micro-batching (CPU), else G's padding.

    XLA picks kernels by shape, so the same image run at another batch shape differs by float rounding, which
    hundreds of Adam steps amplify (measured: 3e-3 after 15 steps, 0.7 after 250). At one fixed micro-batch
    shape the result is bit-identical whatever the batch mates or position; the price is that a lone image
    costs a whole micro-batch.
    """
    if not plan.micro_batch:
        return G.padded_size(n)
    unit = plan.micro_batch * G.num_devices
    return -(-n // unit) * unit


def _invert_batch(G: Generator, plan: _Plan, targets: np.ndarray, init: str, seed: int, vgg16: VGG16 | None,
                  timings: dict[str, float]) -> dict[str, Any]:
    n = len(targets)
    t0 = time.perf_counter()
    hashes = image_hashes(targets)
    codes0 = initial_codes(G, targets, plan.space, init, seed, hashes)
    center, _ = latent_stats(G, plan.space)
    noise0 = {}
    if plan.optimize_noise:
        flat = {name: leaf for name, leaf in _flat_buffers(G.buffers).items() if name in _noise_paths(G.buffers)}
        noise0 = {name: np.broadcast_to(np.asarray(m, np.float32), (n, *m.shape)) for name, m in flat.items()}
    timings["init_s"] += time.perf_counter() - t0

    size = _padded_size(G, plan, n)
    pad = size - n

    def padded(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a, np.repeat(a[:1], pad, axis=0)]) if pad else np.asarray(a)

    batch_sharding = NamedSharding(G.mesh, P(parallel.DATA_AXIS))
    replicated = NamedSharding(G.mesh, P())
    active = np.arange(size) < n  # padding repeats image 0 but never moves and is cut away
    args = (G.params, G.buffers,
            jax.device_put(vgg16.params if vgg16 is not None else {}, replicated),
            jax.device_put(np.asarray(center, np.float32), replicated),
            jax.device_put(padded(codes0), batch_sharding),
            jax.device_put({k: padded(v) for k, v in noise0.items()}, batch_sharding),
            jax.device_put(padded(targets), batch_sharding),
            jax.device_put(padded(hashes), batch_sharding),
            jax.device_put(active, batch_sharding),
            jax.device_put(np.uint32(seed), replicated))
    programs = _RUNNERS.setdefault(G, {})
    if plan not in programs:
        programs[plan] = (_build_runner(G, plan), {})
    runner, compiled = programs[plan]
    if size not in compiled:
        t0 = time.perf_counter()
        try:
            compiled[size] = runner.lower(*args).compile()
        except ValueError as err:  # e.g. a StyleGAN with random noise needs a key
            raise InputError(f"cannot invert {G.name} in {plan.space}: {err}") from None
        timings["compile_s"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    out = jax.device_get(compiled[size](*args))
    timings["run_s"] += time.perf_counter() - t0
    result = {k: np.asarray(v)[:n] for k, v in out.items() if k != "noise"}
    if "noise" in out:
        result["noise"] = {k: np.asarray(v)[:n] for k, v in out["noise"].items()}
    return result


__all__ = ["DEFAULT_INIT", "DEFAULT_LR", "DEFAULT_STEPS", "InversionResult", "VGG16", "image_hashes",
           "initial_codes", "invert", "latent_stats", "load_vgg16", "lpips_distance", "lpips_features",
           "lr_schedule", "make_plan", "parse_init", "psnr", "vgg16_features"]

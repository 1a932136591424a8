"""The compiled inversion program: one `lax.while_loop` over the steps of a batch, sharded over `G.mesh`.

optax drives the updates. Every per-image quantity (optimizer state, latent noise, noise renormalization,
early stop, NaN handling) is computed per image, and the objective is the *sum* of per-image losses, so an
image's result does not depend on its batch mates or its position in the batch. (Up to float32 rounding:
XLA picks kernel blockings by batch shape, a ~1e-7 difference that a long run at lr 0.1 can amplify into a
nearby optimum of similar quality; a fixed batch layout is bit-for-bit reproducible, see `padded_size`.)
"""

from __future__ import annotations

import functools
import time
import weakref
from collections.abc import Callable
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
from ifgan_jax.inversion.initial import (
    TAG_NOISE,
    image_hashes,
    initial_codes,
    initial_noise_maps,
    latent_stats,
    leaf_name,
)
from ifgan_jax.inversion.losses import clipped_mse, inversion_loss, noise_regularizer, uses_lpips
from ifgan_jax.inversion.plan import InversionPlan
from ifgan_jax.models.vgg16 import VGG16, lpips_features

LR_RAMPUP = 0.05  # linear warm-up over the first 5% of the steps
LR_RAMPDOWN = 0.25  # cosine decay to 0 over the last 25%

# Compiled programs per generator: {plan.program: (jitted runner, {padded size: compiled})}.
_RUNNERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


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


def _with_noise(buffers: dict, noise: dict[str, jax.Array]) -> dict:
    """`buffers` with the named noise leaves replaced (per-image (n, R, R) maps)."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(buffers)
    leaves = [noise.get(leaf_name(path), leaf) for path, leaf in flat]
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _to_sphere(code: jax.Array) -> jax.Array:
    """Codes rescaled to norm sqrt(d) (InterFaceGAN's Z normalization, differentiable)."""
    d = code.shape[-1]
    return code * (jnp.sqrt(jnp.float32(d)) / jnp.linalg.norm(code, axis=-1, keepdims=True))


def _objective(G: Generator, plan: InversionPlan, consts: tuple, v: dict, latent_noise: jax.Array,
               targets: jax.Array, tfeats: list) -> tuple[jax.Array, jax.Array]:
    """Per-image losses and reconstructions for variables v = {code, noise?}; consts = (params, buffers, vgg,
    center, enc)."""
    params, buffers, vgg, center, enc = consts
    code = v["code"]
    code_axes = tuple(range(1, code.ndim))
    x = code + latent_noise
    if plan.space == "z" and G.normalize_z:
        x = _to_sphere(x)
    bufs = _with_noise(buffers, v["noise"]) if plan.optimize_noise else buffers
    recon = G.apply_synthesize(params, bufs, x, plan.space, noise_mode=plan.noise_mode)
    losses = inversion_loss(plan.loss, plan.perceptual_weight, recon, targets, vgg, tfeats)
    if plan.latent_weight:
        losses += plan.latent_weight * jnp.mean(jnp.square(code - center), axis=code_axes)
    if plan.domain_weight:  # idinvert: keep the code where the encoder would put its image
        deviation = (plan.encoder.apply(enc, recon) - code) / enc["scale"]
        losses += plan.domain_weight * jnp.mean(jnp.square(deviation), axis=code_axes)
    if plan.optimize_noise:
        losses += plan.noise_weight * jax.vmap(noise_regularizer)(v["noise"])
    return losses, recon


def _project(plan: InversionPlan, v: dict) -> dict:
    """Constraints after each step: codes on the sphere (plan.sphere); noise maps renormalized per image."""
    if plan.sphere:
        v = {**v, "code": _to_sphere(v["code"])}
    if plan.optimize_noise:
        def renorm(m):  # per image and map: zero mean, unit variance (NVlabs)
            m = m - m.mean(axis=(1, 2), keepdims=True)
            return m * jax.lax.rsqrt(jnp.mean(jnp.square(m), axis=(1, 2), keepdims=True))
        v = {**v, "noise": {k: renorm(m) for k, m in v["noise"].items()}}
    return v


def _latent_noise(plan: InversionPlan, keys: jax.Array, code_shape: tuple, step: jax.Array) -> jax.Array:
    """NVlabs' latent noise of one step: std noise_std, ramped down to 0 over the first noise_ramp."""
    t = step.astype(jnp.float32) / plan.steps
    scale = plan.noise_std * jnp.square(jnp.maximum(0.0, 1.0 - t / plan.noise_ramp))
    draw = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, step), code_shape))(keys)
    return draw * scale


def _solve(G: Generator, plan: InversionPlan, optimizer: optax.GradientTransformation, consts: tuple, seed,
           codes0, noise0, targets, hashes, active0) -> dict:
    """The whole optimization of one micro-batch (CPU) or of the device's batch (accelerators): a while loop
    of optax steps, each image stopping on its own (stop_loss, non-finite values)."""
    n, code_shape = codes0.shape[0], codes0.shape[1:]
    vgg = consts[2]
    tfeats = lpips_features(vgg, targets) if uses_lpips(plan.loss) else []
    v0 = {"code": codes0, "noise": noise0} if plan.optimize_noise else {"code": codes0}
    base = jax.random.fold_in(jax.random.key(seed), TAG_NOISE)
    keys = jax.vmap(lambda h: jax.random.fold_in(base, h))(hashes)

    def value_grad(v, step):
        latent_noise = _latent_noise(plan, keys, code_shape, step) if plan.noise_std else jnp.zeros_like(codes0)

        def total(v):
            losses, _ = _objective(G, plan, consts, v, latent_noise, targets, tfeats)
            return jnp.sum(losses), losses
        (_, losses), grads = jax.value_and_grad(total, has_aux=True)(v)
        return losses, grads

    def body(carry):
        step, v, opt_state, active, failed, done_steps = carry
        losses, grads = value_grad(v, step)
        finite = jnp.isfinite(losses) & _all_finite(grads, n)
        updates, new_state = jax.vmap(optimizer.update)(grads, opt_state, v)
        new_v = _project(plan, optax.apply_updates(v, updates))
        finite &= _all_finite(new_v, n)
        reached = (losses <= plan.stop_loss) if plan.stop_loss is not None else jnp.zeros((n,), bool)
        move = active & finite & ~reached
        return (step + 1, _select(move, new_v, v), _select(move, new_state, opt_state), move,
                failed | (active & ~finite), done_steps + move.astype(jnp.int32))

    def cond(carry):
        return (carry[0] < plan.steps) & jnp.any(carry[3])

    carry = (jnp.int32(0), _project(plan, v0), jax.vmap(optimizer.init)(v0), active0, jnp.zeros((n,), bool),
             jnp.zeros((n,), jnp.int32))
    _, v, _, _, failed, done_steps = jax.lax.while_loop(cond, body, carry)

    losses, recon = _objective(G, plan, consts, v, jnp.zeros_like(v["code"]), targets, tfeats)
    out = {"codes": v["code"], "recon": recon, "loss": losses, "mse": clipped_mse(recon, targets),
           "steps": done_steps, "failed": failed}
    if plan.optimize_noise:
        out["noise"] = v["noise"]
    return out


def _chunked(micro: int, fn: Callable, n: int, *trees: Any) -> Any:
    """fn over the trees one micro-batch at a time (images never mix); whole when micro is 0 or uneven."""
    if not micro or n % micro:
        return fn(*trees)
    k = n // micro
    split = jax.tree.map(lambda a: a.reshape(k, micro, *a.shape[1:]), trees)
    out = jax.lax.map(lambda args: fn(*args), split)
    return jax.tree.map(lambda a: a.reshape(n, *a.shape[2:]), out)


def build_runner(G: Generator, plan: InversionPlan) -> Callable:
    """The jitted, sharded program: init optimizer, step loop, final clean evaluation.

    Micro-batches run one after another, each its whole step loop: activations stay in cache, and every image
    runs in a program of one fixed shape, so its result does not depend on the batch."""
    optimizer = optax.adam(lr_schedule(plan.lr, plan.steps)) if plan.optimizer is None else plan.optimizer

    def local(params, buffers, vgg, center, enc, codes0, noise0, targets, hashes, active0, seed):
        per_chunk = functools.partial(_solve, G, plan, optimizer, (params, buffers, vgg, center, enc), seed)
        return _chunked(plan.micro_batch, per_chunk, codes0.shape[0], codes0, noise0, targets, hashes, active0)

    if G.num_devices == 1:
        return jax.jit(local)
    batch, rep = P(parallel.DATA_AXIS), P()
    # Each device runs its own step loop on its images (no collectives), so the loop carry mixes
    # replicated and per-device values; the varying-axes type check would reject that without cause.
    sharded = jax.shard_map(local, mesh=G.mesh, out_specs=batch, check_vma=False,
                            in_specs=(rep, rep, rep, rep, rep, batch, batch, batch, batch, batch, rep))
    return jax.jit(sharded)


# -- one batch ---------------------------------------------------------------------------------------------


def padded_size(G: Generator, plan: InversionPlan, n: int) -> int:
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


def run_batch(G: Generator, plan: InversionPlan, targets: np.ndarray, vgg16: VGG16 | None,
              timings: dict[str, float]) -> dict[str, Any]:
    """Invert float [-1, 1] targets (one batch): numpy codes, recon, loss, mse, steps, failed (and noise).

    Compiles the plan's program at this padded size on first use; adds init_s, compile_s, run_s to `timings`.
    """
    n = len(targets)
    t0 = time.perf_counter()
    hashes = image_hashes(targets)
    codes0 = initial_codes(G, targets, plan.space, plan.init, plan.seed, hashes, plan.encoder)
    center, _ = latent_stats(G, plan.space)
    noise0 = initial_noise_maps(G, n) if plan.optimize_noise else {}
    timings["init_s"] += time.perf_counter() - t0

    size = padded_size(G, plan, n)
    pad = size - n

    def padded(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a, np.repeat(a[:1], pad, axis=0)]) if pad else np.asarray(a)

    batch_sharding = NamedSharding(G.mesh, P(parallel.DATA_AXIS))
    replicated = NamedSharding(G.mesh, P())
    active = np.arange(size) < n  # padding repeats image 0 but never moves and is cut away
    args = (G.params, G.buffers,
            jax.device_put(vgg16.params if vgg16 is not None else {}, replicated),
            jax.device_put(np.asarray(center, np.float32), replicated),
            jax.device_put(plan.encoder.arrays if plan.domain_weight else {}, replicated),
            jax.device_put(padded(codes0), batch_sharding),
            jax.device_put({k: padded(v) for k, v in noise0.items()}, batch_sharding),
            jax.device_put(padded(targets), batch_sharding),
            jax.device_put(padded(hashes), batch_sharding),
            jax.device_put(active, batch_sharding),
            jax.device_put(np.uint32(plan.seed), replicated))
    programs = _RUNNERS.setdefault(G, {})
    if plan.program not in programs:
        programs[plan.program] = (build_runner(G, plan.program), {})
    runner, compiled = programs[plan.program]
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


def encode_batch(G: Generator, plan: InversionPlan, targets: np.ndarray, vgg16: VGG16 | None,
                 timings: dict[str, float]) -> dict[str, Any]:
    """steps 0: the encoder's codes for float [-1, 1] targets and their reconstructions (as `run_batch`)."""
    n = len(targets)
    t0 = time.perf_counter()
    codes = plan.encoder.encode(targets, G.mesh)
    recon = G.synthesize(codes, plan.space, noise_mode=plan.noise_mode)
    tg = jnp.asarray(targets)
    mse = clipped_mse(recon, tg)
    loss = inversion_loss(plan.loss, plan.perceptual_weight, recon, tg, vgg16.params if plan.uses_lpips else None)
    out = jax.device_get({"codes": codes, "recon": recon, "loss": loss, "mse": mse})
    timings["run_s"] += time.perf_counter() - t0
    result = {k: np.asarray(v, np.float32)[:n] for k, v in out.items()}
    return {**result, "steps": np.zeros(n, np.int32), "failed": ~np.isfinite(result["loss"])}

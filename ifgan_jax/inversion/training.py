"""Encoder training: the jitted, data-sharded step and what drives it.

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
import hashlib
import weakref
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ifgan_jax import parallel
from ifgan_jax.generator import Generator
from ifgan_jax.images import to_float
from ifgan_jax.inversion.encoder import Encoder
from ifgan_jax.inversion.losses import clipped_mse, image_loss
from ifgan_jax.models import encoder as enc_model

WARMUP_FRACTION = 0.02
FINAL_LR_FRACTION = 0.02
# Compiled training steps per generator (see make_train_step).
_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

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
    space, opt = settings.space, optimizer(settings)
    pixel_batch = settings.pixel_batch or settings.batch_size
    module = encoder.module
    code_axes = tuple(range(1, 1 + len(encoder.config.code_shape)))
    use_real = settings.real_weight > 0 and settings.real_batch > 0

    def reconstruction(vgg_params, recon, target):
        with_lpips = settings.perceptual_weight and vgg_params is not None
        weight = settings.perceptual_weight / max(settings.pixel_weight, 1e-12) if with_lpips else None
        return image_loss(recon, target, lpips_weight=weight, vgg=vgg_params)

    def batch_losses(params, consts, z, real):
        # Sums over the batch's images of each loss term (per-image means).
        gparams, gbuffers, center, scale, vgg_params = consts
        code = jax.lax.stop_gradient(G.apply_codes_from_z(gparams, gbuffers, z, space))
        x = jax.lax.stop_gradient(G.apply_synthesize(gparams, gbuffers, code, space, differentiable=False))
        pred = enc_model.encode(module, params, x, center, scale)
        code_loss = jnp.mean(jnp.square((pred - code) / scale), axis=code_axes)
        terms = {"code": jnp.sum(code_loss)}
        if settings.pixel_weight:
            # The pixel loss on the first pixel_batch images of the batch (backprop through G is the cost).
            k = max(1, pixel_batch * z.shape[0] // settings.batch_size)
            recon = G.apply_synthesize(gparams, gbuffers, pred[:k], space)
            pixel = reconstruction(vgg_params, recon, x[:k])
            mse = clipped_mse(recon, x[:k])
            terms["pixel"] = jnp.sum(pixel) * (z.shape[0] / k)
            terms["mse"] = jnp.sum(mse) * (z.shape[0] / k)
        if use_real:
            pred_r = enc_model.encode(module, params, real, center, scale)
            recon_r = G.apply_synthesize(gparams, gbuffers, pred_r, space)
            terms["real"] = jnp.sum(reconstruction(vgg_params, recon_r, real))
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
    mse = clipped_mse(recon, jnp.asarray(images))
    return {"codes": codes, "recon": recon, "mse": np.asarray(mse)}


def eval_images(G: Generator, seed: int, count: int, space: str) -> np.ndarray:
    """Held-out in-domain images (never training data) as float [-1, 1], quantized to uint8 like PNGs."""
    z = G.sample_latents(derived_seed(seed, "eval"), 0, count)
    return to_float(np.asarray(G.synthesize_uint8(G.codes_from_z(z, space), space)))

"""The settings of one inversion, validated once into a frozen `InversionPlan` (`make_plan`).

Defaults per space (measured on dcgan_digiface, see benchmarks/results/invert_cpu.json):

- ``z``: init ``best-of-256`` (the closest of 256 seeded samples by pixel MSE), Adam at lr 0.1, 1000 steps,
  codes projected back to the sqrt(d) sphere after every step, no latent noise. Tuning on 16 DCGAN images
  (mean / min PSNR, dB): the defaults 41.6 / 25.6. Without the sphere: best-of-256 39.6 / 23.2,
  best-of-1024 40.9 / 25.2, 500 steps 32.6 / 22.9, mean init (z = 0) 14.3 / 10.7, latent noise 0.05
  28.1 / 19.1. The sphere frees images stuck in poor minima although the DCGAN's own codes are not
  normalized; the mean code z = 0 has no direction on it (and is a poor start anyway).
- ``w`` / ``wp``: init ``mean`` (the mean of 10,000 mapped samples), lr 0.1, latent noise from 0.05 * the
  samples' spread ramped to 0 over 75% of the run: NVlabs' projector settings, not tuned here.
- init ``encoder`` (a trained encoder's codes, inversion/encoder.py; the model's shipped one by default):
  steps 0 is the encoder alone (no optimizer, batches of ENCODER_BATCH); refinement keeps the Adam loop,
  without latent noise and, for Z, without the sphere (the encoder's codes are not on it: projecting them
  costs more than it frees). Tuning of 100 refinement steps on 8 DCGAN faces from an early encoder (19.6 dB
  alone), mean / min PSNR: lr 0.2 31.7 / 27.3, 0.3 32.6 / 27.6, 0.5 29.8 / 24.4, 0.1 29.7 / 24.2, 0.05
  28.4 / 23.8; with the sphere: lr 0.1 26.5 / 22.8, 0.02 22.8 / 21.3. domain_weight adds idinvert's domain
  regularizer |E(G(code)) - code|^2 (in units of the latent spread).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ifgan_jax import latents
from ifgan_jax.errors import InputError
from ifgan_jax.generator import Generator
from ifgan_jax.inversion.encoder import resolve_encoder
from ifgan_jax.inversion.initial import latent_stats, noise_paths, parse_init
from ifgan_jax.inversion.losses import LOSSES
from ifgan_jax.models.vgg16 import MIN_RESOLUTION as VGG_MIN_RESOLUTION

DEFAULT_STEPS = 1000
DEFAULT_LR = {"z": 0.1, "w": 0.1, "wp": 0.1}
DEFAULT_INIT = {"z": "best-of-256", "w": "mean", "wp": "mean"}
# NVlabs' projector: initial latent noise = 0.05 * spread of the mapped samples, gone by 75% of the run.
DEFAULT_INITIAL_NOISE = {"z": 0.0, "w": 0.05, "wp": 0.05}
NOISE_RAMP = 0.75
DEFAULT_BATCH = 32
ENCODER_BATCH = 256  # images per call when steps is 0 (the encoder alone: no optimizer state)
ENCODER_LR = {"z": 0.2, "w": 0.1, "wp": 0.1}  # refinement from the encoder's codes (z measured; w/wp: NVlabs')
# Images per fixed-shape step loop on CPU: value-and-grad measured fastest at 16 (8: +10%, 32: +10-40%).
CPU_MICRO_BATCH = 16
NOISE_WEIGHT = 1e5  # NVlabs' regularize_noise_weight


@dataclasses.dataclass(frozen=True)
class InversionPlan:
    """Every setting of one inversion, checked and with the per-space defaults resolved (see `make_plan`)."""

    space: str
    steps: int
    lr: float | None  # the default Adam's peak lr; None with a custom optimizer
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
    micro_batch: int  # images per fixed-shape step loop (0: the whole padded batch)
    init: str  # 'mean' | 'random' | 'best-of-K'
    seed: int
    batch_size: int  # images per call of the compiled program
    encoder: Any = None  # an inversion.encoder.Encoder for init 'encoder' / the domain regularizer (by identity)
    domain_weight: float = 0.0  # idinvert's domain regularizer |E(G(code)) - code|^2 / spread^2
    noise_mode: str | None = None  # the generator's noise inputs: 'const' | 'none' (None: the model's)

    @property
    def uses_lpips(self) -> bool:
        return isinstance(self.loss, str) and "lpips" in self.loss

    @property
    def program(self) -> InversionPlan:
        """The part that fixes the compiled program (init, seed and batch size only change its inputs)."""
        return dataclasses.replace(self, init="", seed=0, batch_size=0,
                                   encoder=self.encoder if self.domain_weight else None)


def _error(argument: str, rest: str) -> InputError:
    """An InputError whose message starts with the keyword it is about (the CLI says it as its flag)."""
    return InputError(f"{argument} {rest}", argument=argument)


def check_options(*, steps: int | None = None, lr: float | None = None, optimizer: Any = None,
                  seed: int = 0, batch_size: int | None = None, init: str | None = None) -> None:
    """The checks that need no model (the `invert` command runs them before loading one); InputError."""
    if steps is not None and int(steps) < (0 if init == "encoder" else 1):
        raise _error("steps", f"must be >= 1 (0 only with init 'encoder': its codes "
                         f"alone), got {steps}")
    if batch_size is not None and int(batch_size) < 1:
        raise _error("batch_size", f"must be >= 1, got {batch_size}")
    latents.check_seed(seed)
    if optimizer is not None:
        if lr is not None:
            raise InputError("lr applies to the default Adam only; put the learning rate in the optimizer")
        if not hasattr(optimizer, "init") or not hasattr(optimizer, "update"):
            raise InputError("optimizer must be an optax GradientTransformation")
    elif lr is not None and not (math.isfinite(float(lr)) and float(lr) > 0):
        raise _error("lr", f"must be a positive number, got {lr}")
    if init is not None:
        parse_init(init)


def check_vgg16(G: Generator, loss: Any, vgg16: Any) -> None:
    """A perceptual loss needs VGG16 weights and images of at least VGG_MIN_RESOLUTION px."""
    if isinstance(loss, str) and "lpips" in loss:
        if vgg16 is None:
            raise InputError(f"vgg16: loss {loss!r} needs VGG16 weights (a torchvision vgg16 .pth)", argument="vgg16")
        if G.resolution < VGG_MIN_RESOLUTION:
            raise InputError(f"the perceptual loss needs images of at least {VGG_MIN_RESOLUTION} px")


def make_plan(G: Generator, space: str = "z", *, steps: int | None = None, lr: float | None = None,
              optimizer: Any = None, loss: Any = None, vgg16: Any = None, perceptual_weight: float = 1.0,
              initial_noise: float | None = None, noise_ramp: float = NOISE_RAMP, sphere: bool | None = None,
              latent_weight: float = 0.0, optimize_noise: bool = False, noise_weight: float = NOISE_WEIGHT,
              stop_loss: float | None = None, micro_batch: int | None = None, init: str | None = None,
              seed: int = 0, batch_size: int | None = None, encoder: Any = None, domain_weight: float = 0.0,
              noise_mode: str | None = None) -> InversionPlan:
    """Check every setting of an inversion of G's images and resolve the defaults; InputError otherwise.

    steps/lr: the default Adam with NVlabs' lr ramp (an `optimizer` brings its own lr; see `lr_schedule`).
    loss: 'mse', 'lpips', 'mse+lpips' (default when `vgg16` weights are given) or callable(recon, target) ->
    per-image (N,), which must not mix images. init: 'mean' | 'random' | 'best-of-K' (default per space,
    DEFAULT_INIT). initial_noise/noise_ramp: latent noise of initial_noise * spread, decaying to 0 at
    noise_ramp of the run. sphere: project Z codes to norm sqrt(d) after each step (default for z).
    latent_weight: weight of the mean squared distance to the mean code. optimize_noise: StyleGAN noise maps
    too (with NVlabs' regularizer, weight noise_weight). stop_loss: an image stops when its loss is below it.
    micro_batch: images per fixed-shape step loop (default CPU_MICRO_BATCH on CPU, the whole batch on
    accelerators; 1 is fastest for lone images). batch_size: images per call (default DEFAULT_BATCH).
    seed: keys best-of-K / random init and the latent noise. encoder: for init 'encoder' (the default init
    when given) and domain_weight, an inversion.encoder.Encoder or its directory (default: the model's
    shipped encoder); steps 0 with it is the encoder alone. noise_mode: 'const' or 'none' for a StyleGAN's
    noise inputs (None: the model's; 'random' would make the objective a different one each step).
    Errors are InputErrors whose `argument` names the keyword they are about.
    """
    if init is None and encoder is not None:
        init = "encoder"
    check_options(steps=steps, lr=lr, optimizer=optimizer, seed=seed, batch_size=batch_size, init=init)
    if micro_batch is None:  # CPU (the generator micro-batches): CPU_MICRO_BATCH; accelerators: whole batch
        micro_batch = CPU_MICRO_BATCH if G.micro_batch else 0
    if micro_batch < 0:
        raise _error("micro_batch", f"must be >= 0, got {micro_batch}")
    if space not in G.spaces:
        raise InputError(f"{G.name} has no {space!r} space (spaces: {', '.join(G.spaces)})")
    steps = DEFAULT_STEPS if steps is None else int(steps)
    from_encoder = init == "encoder"
    if not (math.isfinite(float(domain_weight)) and float(domain_weight) >= 0):
        raise _error("domain_weight", f"must be >= 0, got {domain_weight}")
    encoder = resolve_encoder(G, space, encoder) if from_encoder or domain_weight else None
    if optimizer is None:
        lr = (ENCODER_LR if from_encoder else DEFAULT_LR)[space] if lr is None else float(lr)
    if loss is None:
        loss = "mse+lpips" if vgg16 is not None else "mse"
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise InputError(f"loss must be one of {LOSSES} or a callable, got {loss!r}")
        check_vgg16(G, loss, vgg16)
    elif not callable(loss):
        raise InputError(f"loss must be one of {LOSSES} or a callable, got {type(loss).__name__}")
    G.check_noise_mode(noise_mode)
    if noise_mode == "random":
        raise _error("noise_mode", "random makes every step's objective another one; "
                         "invert with const or none")
    if optimize_noise:
        if noise_mode == "none":
            raise _error("optimize_noise", "needs the noise inputs (not noise mode none)")
        if not noise_paths(G.buffers):
            raise InputError(f"{G.name} has no noise inputs to optimize")
        if space == "z":
            raise InputError("noise optimization needs the W or W+ space")
    _, spread = latent_stats(G, space)
    default_noise = 0.0 if from_encoder else DEFAULT_INITIAL_NOISE[space]
    factor = default_noise if initial_noise is None else float(initial_noise)
    if factor < 0 or not 0 < noise_ramp <= 1:
        raise InputError("initial_noise must be >= 0 and noise_ramp in (0, 1]")
    if sphere is None:
        sphere = space == "z" and not from_encoder
    if sphere and space != "z":
        raise InputError("sphere projection applies to Z codes only")
    init = DEFAULT_INIT[space] if init is None else init
    if parse_init(init)[0] == "mean" and sphere:
        raise InputError("init 'mean' (z = 0) has no direction on the Z sphere; use best-of-K or random "
                         "(or sphere=False)")
    return InversionPlan(
        space=space, steps=steps, lr=lr, optimizer=optimizer, loss=loss, perceptual_weight=float(perceptual_weight),
        noise_std=factor * spread, noise_ramp=float(noise_ramp), sphere=bool(sphere),
        latent_weight=float(latent_weight), optimize_noise=bool(optimize_noise), noise_weight=float(noise_weight),
        stop_loss=None if stop_loss is None else float(stop_loss), micro_batch=int(micro_batch), init=init,
        seed=int(seed), batch_size=(ENCODER_BATCH if steps == 0 else DEFAULT_BATCH) if batch_size is None
        else int(batch_size), encoder=encoder, domain_weight=float(domain_weight), noise_mode=noise_mode)

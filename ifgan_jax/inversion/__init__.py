"""GAN inversion: optimize latent codes (and optionally StyleGAN noise) so the generator reproduces images.

    plan = make_plan(G, "w", steps=500)          # every setting checked once (plan.py)
    result = invert(G, images, plan=plan)        # or, building the plan: invert(G, images, "w", steps=500)

The package: plan.py (settings and defaults per space, validated once), initial.py (latent statistics, seeded
initial codes, noise maps), losses.py (the objectives, composed once), solver.py (the compiled step loop,
sharded over `G.mesh` by image), encoder.py (trained encoders: load, save, encode) and training.py (their
training step); models/vgg16.py (the perceptual loss) with converters/vgg16.py (its weights). An image's result does not
depend on its batch mates or position: random draws are keyed by the plan's seed and a hash of the image's
pixels, and every image runs in a program of one fixed shape (see solver.py).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from converters.vgg16 import convert_vgg16
from ifgan_jax.errors import InputError
from ifgan_jax.generator import Generator
from ifgan_jax.images import to_float
from ifgan_jax.inversion.initial import image_hashes, initial_codes, latent_stats, parse_init
from ifgan_jax.inversion.losses import LOSSES
from ifgan_jax.inversion.plan import (
    CPU_MICRO_BATCH,
    DEFAULT_BATCH,
    DEFAULT_INIT,
    DEFAULT_LR,
    DEFAULT_STEPS,
    ENCODER_BATCH,
    ENCODER_LR,
    NOISE_RAMP,
    NOISE_WEIGHT,
    InversionPlan,
    check_options,
    check_vgg16,
    make_plan,
)
from ifgan_jax.inversion.solver import LR_RAMPDOWN, LR_RAMPUP, encode_batch, lr_schedule, run_batch
from ifgan_jax.models.base import SPACES
from ifgan_jax.models.vgg16 import VGG16


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


def load_vgg16(path: str | os.PathLike, lpips_lin: str | os.PathLike | None = None) -> VGG16:
    """A torchvision VGG16 state dict (.pth) and optional LPIPS heads -> VGG16 (see converters/vgg16.py)."""
    return VGG16(convert_vgg16(path, lpips_lin), source=str(path))


def psnr(mse: npt.ArrayLike) -> np.ndarray:
    """PSNR in dB of [-1, 1] images (peak-to-peak 2), the same as 8-bit PSNR without quantization."""
    mse = np.asarray(mse, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (10.0 * np.log10(4.0 / mse)).astype(np.float32)


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
        return to_float(arr)
    if not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"images must be uint8 or float in [-1, 1], got dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise InputError("images contain NaN or infinite values")
    return arr


def invert(G: Generator, images: Any, space: str | InversionPlan | None = None, *,
           plan: InversionPlan | None = None, vgg16: VGG16 | str | os.PathLike | None = None,
           progress: Callable[[int], None] | None = None, **settings: Any) -> InversionResult:
    """Find codes whose images match `images` (uint8 or [-1, 1] float, (N, R, R, 3)).

    Either a plan from `make_plan` (`invert(G, images, plan)` or `plan=plan`), or the plan's settings as
    keywords: `space` (default 'z'), steps, lr, optimizer, loss, init, seed, batch_size, micro_batch, ...
    (all documented at `make_plan`), which build the plan here. init='encoder' starts from a trained
    encoder's codes (`encoder=DIR`, default the model's shipped one); with steps=0 they are the result.
    vgg16: the perceptual loss' weights (a VGG16 or a .pth path); with it the default loss is 'mse+lpips'.
    progress(k) is called after each batch of k images.
    """
    if isinstance(space, InversionPlan) and plan is None:
        space, plan = None, space
    targets = check_targets(G, images)
    if isinstance(vgg16, (str, os.PathLike)):
        vgg16 = load_vgg16(vgg16)
    if plan is None:
        plan = make_plan(G, "z" if space is None else space, vgg16=vgg16, **settings)
    else:
        if settings or space not in (None, plan.space):
            raise InputError("give either a plan or its settings, not both (make_plan takes every setting)")
        check_vgg16(G, plan.loss, vgg16)

    parts, timings = [], {"compile_s": 0.0, "run_s": 0.0, "init_s": 0.0}
    for start in range(0, len(targets), plan.batch_size):
        batch = targets[start : start + plan.batch_size]
        parts.append((encode_batch if plan.steps == 0 else run_batch)(G, plan, batch, vgg16, timings))
        if progress is not None:
            progress(len(batch))
    shape = G.code_shape(plan.space)
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
                           failed=merged["failed"], space=plan.space, init=plan.init, noise=noise, timings=timings)


__all__ = ["CPU_MICRO_BATCH", "DEFAULT_BATCH", "DEFAULT_INIT", "DEFAULT_LR", "DEFAULT_STEPS", "ENCODER_BATCH",
           "ENCODER_LR", "LOSSES",
           "LR_RAMPDOWN", "LR_RAMPUP", "NOISE_RAMP", "NOISE_WEIGHT", "SPACES", "VGG16", "InversionPlan",
           "InversionResult", "check_options", "check_targets", "image_hashes", "initial_codes", "invert",
           "latent_stats", "load_vgg16", "lr_schedule", "make_plan", "parse_init", "psnr"]

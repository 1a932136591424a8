"""The `train-encoder` job: train an inversion encoder for a generator's space into a resumable directory.

Output directory: encoder.json + arrays/ (the trained encoder, see ifgan_jax/inversion/encoder.py; `invert --init
encoder --encoder DIR` reads it), metrics.jsonl (one line per --log-every steps: losses averaged over them,
lr, elapsed seconds), metrics.json (the summary: final losses, encoder-only PSNR on held-out generated
images), meta.json. While running, checkpoints/ holds orbax checkpoints of the parameters and optimizer
state every --checkpoint-every steps (the last two); a run killed at any point (kill -9 included) resumes
from the latest with the same command and ends with the same parameters as an uninterrupted run, because
the data of step k depends only on (seed, k). A step whose loss or gradient is not finite stops the run
with the step named; the last good checkpoint stays.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ifgan_jax import files, latents, parallel
from ifgan_jax.errors import InputError
from ifgan_jax.generator import Generator, load_generator
from ifgan_jax.images import load_images
from ifgan_jax.inversion import encoder as enc
from ifgan_jax.inversion import load_vgg16, psnr, training
from ifgan_jax.jobs import rundir
from ifgan_jax.jobs.invert import inputs_sha256
from ifgan_jax.progress import Progress
from ifgan_jax.zoo.registry import DEFAULT_MODEL

CHECKPOINTS = "checkpoints"
LOG_FILE = "metrics.jsonl"
SUMMARY_FILE = "metrics.json"
OUTPUT_NAMES = (rundir.META_FILE, rundir.PROGRESS_FILE, CHECKPOINTS, LOG_FILE, SUMMARY_FILE, enc.MANIFEST,
                enc.ARRAYS)
DEFAULT_STEPS = 6000
DEFAULT_BATCH = 64
DEFAULT_LR = 1e-3
EVAL_COUNT = 64  # held-out generated images the final PSNR is measured on


def run(out_dir: str | Path, *, model: str = DEFAULT_MODEL, weights: str | None = None, space: str = "z",
        steps: int = DEFAULT_STEPS, batch_size: int = DEFAULT_BATCH, lr: float = DEFAULT_LR, seed: int = 0,
        vgg16: str | None = None, lpips_lin: str | None = None, perceptual_weight: float = 1.0,
        real_images: str | None = None, real_weight: float = 1.0, code_weight: float = 1.0,
        pixel_weight: float = 10.0, pixel_batch: int = 0, checkpoint_every: int = 250, log_every: int = 50,
        base_channels: int = 32, max_channels: int = 128, hidden: int = 256, devices: int | None = None,
        overwrite: bool = False, show_progress: bool = True) -> dict[str, Any] | None:
    """The `train-encoder` command: check the settings, train (or resume) into `out_dir`, print a summary.

    Returns the summary (metrics.json), or None when `out_dir` already held this complete run.
    """
    files.output_path(out_dir, "-o")  # an empty string is not the current folder
    _check(steps=steps, batch_size=batch_size, lr=lr, seed=seed, checkpoint_every=checkpoint_every,
           log_every=log_every, pixel_batch=pixel_batch, weights=(code_weight, pixel_weight, perceptual_weight,
                                                                 real_weight))
    for path, flag in ((vgg16, "--vgg16"), (lpips_lin, "--lpips-lin"), (real_images, "--real-images")):
        if path and not Path(path).exists():
            raise InputError(f"{flag} {path} does not exist")
    if lpips_lin and not vgg16:
        raise InputError("--lpips-lin needs --vgg16")
    G = load_generator(model, weights=weights, devices=devices)
    if batch_size % G.num_devices or (pixel_batch and pixel_batch % G.num_devices):
        raise InputError(f"--batch-size and --pixel-batch must be multiples of the device count {G.num_devices}")
    vgg = load_vgg16(vgg16, lpips_lin) if vgg16 else None
    real = None
    if real_images:
        loaded = load_images(real_images, G.resolution)
        if len(loaded) == 0:
            raise InputError(f"no usable images in {real_images}")
        real = loaded
    settings = training.TrainSettings(
        space=space, steps=int(steps), batch_size=int(batch_size), lr=float(lr), seed=int(seed),
        code_weight=float(code_weight), pixel_weight=float(pixel_weight),
        perceptual_weight=float(perceptual_weight) if vgg is not None else 0.0,
        real_weight=float(real_weight) if real is not None else 0.0,
        real_batch=max(G.num_devices, batch_size // 2 // G.num_devices * G.num_devices) if real is not None else 0,
        pixel_batch=int(pixel_batch))
    widths = {"base_channels": base_channels, "max_channels": max_channels, "hidden": hidden}
    fresh = enc.new_encoder(G, space, seed, **widths)  # checks the space and widths
    identity = {
        "job": "train-encoder", "model": G.name, "family": G.family, "devices": G.num_devices,
        **{k: v for k, v in dataclasses.asdict(settings).items()}, "encoder": widths,
        "vgg16_sha256": files.sha256_file(vgg16) if vgg16 else None,
        "lpips_lin_sha256": files.sha256_file(lpips_lin) if lpips_lin else None,
        "real_images_sha256": inputs_sha256(real) if real is not None else None,
    }
    out = Path(out_dir)
    if rundir.start_run(out, identity, OUTPUT_NAMES, overwrite) is None:
        return files.read_json(out / SUMMARY_FILE)
    command = reproduce_command(model, space, settings, widths, vgg16=vgg16, real_images=real_images)
    summary = train(G, fresh, settings, out, vgg=vgg, real=real, checkpoint_every=checkpoint_every,
                    log_every=log_every, show_progress=show_progress, command=command)
    rundir.finish_run(out, identity)
    shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    ev = summary["eval"]
    print(f"trained {G.name} {space} encoder: {settings.steps} steps in {summary['train_s'] / 60:.1f} min; "
          f"encoder-only PSNR on {ev['count']} held-out generated images {ev['mean_psnr']:.2f} dB "
          f"(min {ev['min_psnr']:.2f}); wrote {out}")
    return summary


def _check(*, steps: int, batch_size: int, lr: float, seed: int, checkpoint_every: int, log_every: int,
           pixel_batch: int, weights: tuple[float, ...]) -> None:
    for value, flag in ((steps, "--steps"), (batch_size, "--batch-size"), (checkpoint_every, "--checkpoint-every"),
                        (log_every, "--log-every")):
        if int(value) < 1:
            raise InputError(f"{flag} must be >= 1, got {value}")
    if not (math.isfinite(float(lr)) and float(lr) > 0):
        raise InputError(f"--lr must be a positive number, got {lr}")
    latents.check_seed(seed, "--seed")
    if not 0 <= int(pixel_batch) <= int(batch_size):
        raise InputError(f"--pixel-batch must be in [0, --batch-size], got {pixel_batch}")
    if any(not (math.isfinite(float(w)) and float(w) >= 0) for w in weights):
        raise InputError("loss weights must be finite and >= 0")


def reproduce_command(model: str, space: str, settings: training.TrainSettings, widths: dict[str, int], *,
                      vgg16: str | None, real_images: str | None) -> str:
    """The `run.py train-encoder` line that retrains this encoder (recorded in encoder.json)."""
    parts = [f"python run.py train-encoder -m {model} --space {space} --steps {settings.steps}",
             f"--batch-size {settings.batch_size} --lr {settings.lr:g} --seed {settings.seed}",
             f"--code-weight {settings.code_weight:g} --pixel-weight {settings.pixel_weight:g}"]
    if settings.pixel_batch:
        parts.append(f"--pixel-batch {settings.pixel_batch}")
    defaults = {"base_channels": 32, "max_channels": 128, "hidden": 256}
    parts += [f"--{k.replace('_', '-')} {v}" for k, v in widths.items() if v != defaults[k]]
    if vgg16:
        parts.append(f"--vgg16 VGG16.pth --perceptual-weight {settings.perceptual_weight:g}")
    if real_images:
        parts.append(f"--real-images PHOTOS --real-weight {settings.real_weight:g}")
    return " ".join(parts + ["-o DIR"])


def real_batch(real: Any, settings: training.TrainSettings, step: int) -> np.ndarray:
    """The real photos of step `step`: epochs of seeded permutations, so it depends only on (seed, step)."""
    n, b = len(real), settings.real_batch
    rows = []
    for j in range(step * b, (step + 1) * b):
        epoch, pos = divmod(j, n)
        rng = np.random.default_rng([training.derived_seed(settings.seed, "real"), epoch])
        rows.append(rng.permutation(n)[pos])
    return real.images[np.asarray(rows)]


def train(G: Generator, encoder: enc.Encoder, settings: training.TrainSettings, out: Path, *, vgg: Any, real: Any,
          checkpoint_every: int, log_every: int, show_progress: bool, command: str) -> dict[str, Any]:
    """The training loop with checkpoints and the metrics log; writes the encoder and metrics.json."""
    step_fn = training.make_train_step(G, encoder, settings, vgg)
    consts = training.train_constants(G, encoder, vgg)
    state = training.initial_state(encoder, settings)
    batch_sharding = NamedSharding(G.mesh, P(parallel.DATA_AXIS))
    options = ocp.CheckpointManagerOptions(max_to_keep=2, create=True)
    with ocp.CheckpointManager((out / CHECKPOINTS).absolute(), options=options) as manager:
        start = manager.latest_step() or 0
        if start:
            try:
                state = manager.restore(start, args=ocp.args.StandardRestore(state))
            except Exception as err:  # orbax raises many types for a damaged checkpoint
                raise InputError(f"{out / CHECKPOINTS}: cannot restore step {start} ({type(err).__name__}); "
                                 "delete that step's folder to resume from the one before") from None
        log = _trim_log(out / LOG_FILE, start)
        elapsed = log[-1]["elapsed_s"] if log else 0.0
        session_start = time.perf_counter()
        schedule = training.lr_schedule(settings)
        progress = Progress(settings.steps, start, desc=f"train-encoder {G.name}", unit="step", enabled=show_progress)
        window: list[dict[str, float]] = []
        for k in range(start, settings.steps):
            z = jax.device_put(training.train_latents(G, settings, k), batch_sharding)
            r = (jax.device_put(real_batch(real, settings, k), batch_sharding) if settings.real_batch else None)
            state, metrics = step_fn(state, consts, z, r)
            metrics = {key: float(v) for key, v in jax.device_get(metrics).items()}
            if not metrics.pop("finite"):
                last = manager.latest_step()
                raise InputError(f"training diverged at step {k + 1} (loss {metrics['loss']}); the last good "
                                 f"checkpoint (step {last or 0}) is kept in {out / CHECKPOINTS}; lower --lr")
            window.append(metrics)
            done = k + 1
            if done % log_every == 0 or done == settings.steps:
                line = {"step": done, "lr": float(schedule(k)),
                        "elapsed_s": round(elapsed + time.perf_counter() - session_start, 2),
                        **{key: float(np.mean([m[key] for m in window])) for key in window[0]}}
                if "mse" in line:
                    line["psnr"] = float(psnr(line["mse"]))
                _append(out / LOG_FILE, line)
                window = []
                if not show_progress or not progress.tty:
                    print(f"step {done}/{settings.steps} loss {line['loss']:.4f} code {line['code']:.4f}"
                          + (f" psnr {line['psnr']:.2f}" if "psnr" in line else "")
                          + f" ({line['elapsed_s']:.0f} s)", flush=True)
            if done % checkpoint_every == 0 or done == settings.steps:
                manager.save(done, args=ocp.args.StandardSave(state))
                manager.wait_until_finished()
                rundir.write_progress(out, done)
            progress.update(1, info=f"loss {metrics['loss']:.4f}")
        progress.close()
    trained = dataclasses.replace(encoder, params=jax.device_get(state["params"]))
    images = training.eval_images(G, settings.seed, EVAL_COUNT, settings.space)
    values = psnr(training.evaluate(G, trained, images)["mse"])
    log = _trim_log(out / LOG_FILE, settings.steps)
    summary = {"steps": settings.steps, "train_s": log[-1]["elapsed_s"] if log else 0.0,
               "final": log[-1] if log else {},
               "eval": {"count": EVAL_COUNT, "images": "generated, never training data (seed stream 'eval')",
                        "mean_psnr": float(values.mean()), "min_psnr": float(values.min())}}
    extra = {"family": G.family, "resolution": G.resolution, "train": dataclasses.asdict(settings),
             "command": command, "eval": summary["eval"], "train_s": summary["train_s"], "devices": G.num_devices,
             "platform": G.mesh.devices.flat[0].platform, "versions": rundir.versions()}
    enc.save_encoder(out, trained, extra)
    files.atomic_write_json(out / SUMMARY_FILE, summary)
    return summary


def _trim_log(path: Path, step: int) -> list[dict[str, Any]]:
    """The metrics lines up to `step` (later ones, written after the checkpoint resumed from, are dropped)."""
    lines = []
    if path.is_file():
        for text in path.read_text().splitlines():
            try:
                entry = json.loads(text)
            except ValueError:
                break  # a line cut by a kill
            if entry.get("step", math.inf) > step:
                break
            lines.append(entry)
    files.atomic_write_bytes(path, "".join(json.dumps(e, sort_keys=True) + "\n" for e in lines).encode())
    return lines


def _append(path: Path, entry: dict[str, Any]) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(entry, sort_keys=True) + "\n")

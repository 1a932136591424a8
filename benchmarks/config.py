"""What `run.py bench` measures: BenchConfig, its defaults, and the checks of the flags that build it."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from ifgan_jax.errors import InputError
from ifgan_jax.zoo.registry import FAMILIES

TASKS = ("sample", "score", "edit", "boundary", "invert", "invert-encoder")
DEFAULT_BATCH_SIZES = (1, 4, 16, 64, 256)
DEFAULT_REPEATS = 5
# jax.default_matmul_precision names: one bf16 pass, three bf16 passes (or TF32 on GPUs), full float32.
MATMUL_PRECISIONS = ("default", "bfloat16", "fastest", "high", "bfloat16_3x", "tensorfloat32", "highest",
                     "float32")


@dataclasses.dataclass
class BenchConfig:
    """What to measure; defaults are sized for a 2-core CPU run of a few minutes."""

    out_dir: Path
    models: tuple[str, ...] = ("dcgan_digiface",)  # registry names, model dirs, or FAMILY@RES (random weights)
    tasks: tuple[str, ...] = TASKS
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    devices: tuple[int, ...] | None = None  # device counts for the scaling run (None: 1, 2 on CPU; all on GPU)
    reference: str = "auto"  # "auto" (if load_torch_reference succeeds), "on" (required), "off"
    interfacegan_repo: Path | None = None
    repeats: int = DEFAULT_REPEATS
    predictor: str | None = None  # None: fer if its wheel is installed, else stats
    boundary_attributes: int = 8
    boundary_samples: int = 50_000
    boundary_dim: int = 512
    boundary_reference_attributes: int = 2  # sklearn is timed on this many, then extrapolated
    invert_batch: int = 32
    invert_steps: int = 10
    invert_loop_images: int = 4  # the per-image loop is timed on this many and reported per image
    invert_encoder_images: int = 16  # invert-encoder: in-domain faces (generated, never training data)
    invert_encoder_steps: int = 100  # invert-encoder: refinement steps (and the optimization-only contender's)
    invert_encoder_batch: int = 256  # invert-encoder: the encoder-only batch
    invert_default_steps: int = 1000  # invert-encoder: today's defaults beside them (0: skip)
    scaling_batch: int | None = None  # per-device batch of the scaling run (None: 64 on CPU, 256 otherwise)
    scaling_repeats: int = 3
    matmul_precisions: tuple[str, ...] = ()  # sample task: extra JAX runs under jax.default_matmul_precision
    verbose: bool = True


def config_from_flags(*, out: str | Path, models: list[str], tasks: str, batch_sizes: str, devices: list[int] | None,
                      scaling_batch: int | None, reference: str, interfacegan_repo: Path | None, repeats: int,
                      predictor: str | None, boundary_size: str, invert_steps: int, matmul_precision: str,
                      verbose: bool) -> BenchConfig:
    """A BenchConfig from the `bench` flags as typed (comma-separated text); InputError on a malformed one."""
    sizes = _int_list(boundary_size, "--boundary-size")
    if len(sizes) != 3:
        raise InputError(f"--boundary-size takes A,N,D (attributes, samples, dims), got {boundary_size!r}")
    attributes, samples, dim = sizes
    if scaling_batch is not None and scaling_batch < 1:
        raise InputError(f"--scaling-batch must be >= 1, got {scaling_batch}")
    return BenchConfig(
        out_dir=Path(out),
        models=tuple(models),
        tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()),
        batch_sizes=_int_list(batch_sizes, "--batch-sizes"),
        devices=tuple(devices) if devices else None,
        scaling_batch=scaling_batch,
        reference=reference,
        interfacegan_repo=interfacegan_repo,
        repeats=repeats,
        predictor=predictor,
        boundary_attributes=attributes,
        boundary_samples=samples,
        boundary_dim=dim,
        invert_steps=invert_steps,
        matmul_precisions=parse_precisions(matmul_precision),
        verbose=verbose,
    )


def _int_list(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise InputError(f"{what} must be positive integers, got {text!r}")
    return values


def parse_precisions(text: str) -> tuple[str, ...]:
    """"bfloat16,tensorfloat32" -> names `jax.default_matmul_precision` accepts; InputError otherwise."""
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    for name in names:
        if name not in MATMUL_PRECISIONS:
            raise InputError(f"unknown matmul precision {name!r}; choose from {', '.join(MATMUL_PRECISIONS)}")
    return names


def parse_model_spec(spec: str) -> tuple[str, int] | None:
    """`FAMILY@RES` (e.g. `pggan@64`, random weights) -> (family, resolution); None for other specs."""
    if "@" not in spec:
        return None
    family, _, res = spec.partition("@")
    if family not in FAMILIES or family == "dcgan":
        raise InputError(f"model {spec!r}: FAMILY@RES takes family pggan or stylegan, got {family!r}")
    try:
        resolution = int(res)
    except ValueError:
        raise InputError(f"model {spec!r}: resolution must be an integer") from None
    if resolution < 8 or resolution & (resolution - 1):
        raise InputError(f"model {spec!r}: resolution must be a power of two >= 8")
    return family, resolution


def check_config(config: BenchConfig) -> None:
    """InputError naming the first setting that cannot run."""
    unknown = [t for t in config.tasks if t not in TASKS]
    if unknown or not config.tasks:
        raise InputError(f"tasks must be a non-empty subset of {','.join(TASKS)}; got {','.join(config.tasks)}")
    if not config.batch_sizes or any(b < 1 for b in config.batch_sizes):
        raise InputError(f"batch sizes must be positive integers, got {list(config.batch_sizes)}")
    if config.devices is not None and any(d < 1 for d in config.devices):
        raise InputError(f"device counts must be positive integers, got {list(config.devices)}")
    if config.repeats < 1:
        raise InputError(f"repeats must be >= 1, got {config.repeats}")
    if config.reference not in ("auto", "on", "off"):
        raise InputError(f"reference must be auto, on or off, got {config.reference!r}")
    if config.interfacegan_repo is not None and not (Path(config.interfacegan_repo) / "models").is_dir():
        raise InputError(f"{config.interfacegan_repo} is not an InterFaceGAN checkout (no models/ folder)")
    for spec in config.models:
        parse_model_spec(spec)
    if min(config.boundary_attributes, config.boundary_samples, config.boundary_dim, config.invert_batch,
           config.invert_steps, config.invert_encoder_images, config.invert_encoder_steps,
           config.invert_encoder_batch) < 1 or config.invert_default_steps < 0:
        raise InputError("boundary sizes and invert batch/steps must be positive")


def log(config: BenchConfig, message: str) -> None:
    """A progress line on stderr unless the run is quiet."""
    if config.verbose:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

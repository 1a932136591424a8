"""Argument helpers shared by subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ifgan_jax.errors import InputError
from ifgan_jax.registry import DEFAULT_MODEL, MODELS

if TYPE_CHECKING:
    from ifgan_jax.distributed import ProcessInfo


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """-m/--model, --weights, --devices, --micro-batch."""
    parser.add_argument("-m", "--model", default=DEFAULT_MODEL,
                        help=f"registry name ({', '.join(MODELS)}) or a converted model directory "
                             f"(default {DEFAULT_MODEL})")
    parser.add_argument("--weights", help="weights file for a registry model whose weights you supply")
    parser.add_argument("--devices", type=int, default=None, help="local devices to shard over (default all)")
    parser.add_argument("--micro-batch", type=int, default=None,
                        help="run batches as a loop of this many samples (CPU default: the model's own, "
                             "DCGAN 32, others 8, inversion 16; 0 = off, the GPU default)")


def load_generator_from_args(args: argparse.Namespace):
    """The Generator named by --model/--weights/--devices/--micro-batch."""
    from ifgan_jax.generator import load_generator

    try:
        return load_generator(args.model, weights=args.weights, micro_batch=args.micro_batch, devices=args.devices)
    except ValueError as err:
        if isinstance(err, InputError):
            raise
        raise InputError(str(err)) from None


def load_npy(path: str | Path, what: str = "codes") -> np.ndarray:
    """np.load without pickles, with one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file {path} does not exist")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise InputError(f"cannot read {what} file {path}: {err}") from None


def add_process_args(parser: argparse.ArgumentParser) -> None:
    """--coordinator, --num-processes, --process-id: share the job among processes (ifgan_jax/distributed.py)."""
    multi = parser.add_argument_group("multi-process (see ifgan_jax/distributed.py)")
    multi.add_argument("--coordinator", metavar="HOST:PORT",
                       help="start jax.distributed with this coordinator ('auto': detect SLURM/MPI/TPU cluster)")
    multi.add_argument("--num-processes", type=int, default=None, metavar="P",
                       help="processes sharing the job; each writes a contiguous share, then one merges")
    multi.add_argument("--process-id", type=int, default=None, metavar="I", help="this process, 0 <= I < P")


def start_processes(args: argparse.Namespace) -> ProcessInfo | None:
    """The ProcessInfo for --coordinator/--num-processes/--process-id, or None; call before any JAX work."""
    if not (args.coordinator or args.num_processes is not None or args.process_id is not None):
        return None
    from ifgan_jax.distributed import initialize

    info = initialize(args.coordinator, args.num_processes, args.process_id)
    return info if info.num_processes > 1 else None

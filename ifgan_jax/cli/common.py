"""Argument groups shared by subcommands, and their translation into a job's keyword arguments."""

from __future__ import annotations

import argparse
from typing import Any

from ifgan_jax.jobs.multiprocess import CONNECT_TIMEOUT_S
from ifgan_jax.models.base import NOISE_MODES, SPACES
from ifgan_jax.zoo.registry import DEFAULT_MODEL, MODELS


def add_space_arg(parser: argparse.ArgumentParser, help_text: str, *, interfacegan: bool = False) -> None:
    """--space z|w|wp, case-insensitive (InterFaceGAN writes Z, W, WP); `interfacegan`: also -s/--latent_space_type."""
    names = ("-s", "--space", "--latent_space_type") if interfacegan else ("--space",)
    parser.add_argument(*names, dest="space", default="z", type=str.lower, choices=SPACES, help=help_text)


def refuse(message: str) -> type[argparse.Action]:
    """An argparse action (use with nargs=0) for a flag we know but cannot honour.

    Giving the flag is a one-line usage error (exit 2) that names it and says what to use instead.
    """

    class Refused(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None) -> None:
            parser.error(f"{'/'.join(self.option_strings)}: {message}")

    return Refused


def add_model_args(parser: argparse.ArgumentParser, *, noise: bool = False) -> None:
    """-m/--model (also InterFaceGAN's --model_name), --weights, --devices, --micro-batch; with `noise` also
    --noise-mode (for the commands that render images)."""
    parser.add_argument("-m", "--model", "--model_name", dest="model", default=DEFAULT_MODEL,
                        help=f"registry name ({', '.join(MODELS)}) or a converted model directory")
    parser.add_argument("--weights", help="weights file for a registry model whose weights you supply")
    parser.add_argument("--devices", type=int, default=None, help="local devices to shard over (default all)")
    parser.add_argument("--micro-batch", type=int, default=None,
                        help="run batches as a loop of this many samples (CPU default: the model's own, "
                             "DCGAN 32, others 8, inversion 16; 0 = off, the GPU default)")
    if noise:
        parser.add_argument("--noise-mode", choices=NOISE_MODES, type=str.lower, default=None,
                            help="StyleGAN noise inputs: const (the stored maps), random (drawn per sample from "
                                 "--seed and its index), none (default: the model's own; refused for models "
                                 "without noise inputs)")


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """The job keywords of add_model_args."""
    options = {"model": args.model, "weights": args.weights, "devices": args.devices, "micro_batch": args.micro_batch}
    if hasattr(args, "noise_mode"):
        options["noise_mode"] = args.noise_mode
    return options


def add_process_args(parser: argparse.ArgumentParser) -> None:
    """--coordinator, --num-processes, --process-id: share the job among processes (ifgan_jax/jobs/multiprocess.py)."""
    multi = parser.add_argument_group("multi-process (see ifgan_jax/jobs/multiprocess.py)")
    multi.add_argument("--coordinator", metavar="HOST:PORT",
                       help="start jax.distributed with this coordinator ('auto': detect SLURM/MPI/TPU cluster)")
    multi.add_argument("--num-processes", type=int, default=None, metavar="P",
                       help="processes sharing the job; each writes a contiguous share, then one merges")
    multi.add_argument("--process-id", type=int, default=None, metavar="I", help="this process, 0 <= I < P")
    multi.add_argument("--coordinator-timeout", type=float, default=CONNECT_TIMEOUT_S, metavar="S",
                       help="seconds a process waits for the coordinator to answer")


def process_options(args: argparse.Namespace) -> dict[str, Any]:
    """The job keywords of add_process_args."""
    return {"coordinator": args.coordinator, "num_processes": args.num_processes, "process_id": args.process_id,
            "coordinator_timeout": args.coordinator_timeout}


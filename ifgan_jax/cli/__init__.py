"""Command-line entry: `python run.py SUBCOMMAND ...` or the `ifgan` console script."""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from typing import NoReturn

from ifgan_jax import __version__

# Each subcommand lives in its own module exposing `register(subparsers)`; the module sets `func`.
SUBCOMMANDS = (
    "sample",
    "score",
    "train_boundary",
    "project",
    "edit",
    "invert",
    "train_encoder",
    "convert",
    "demo",
    "analyze",
    "bench",
    "models",
)

EXIT_BAD_INPUT = 2
# Storage that refuses a write: one line and exit 2, like bad input; the job resumes once it is fixed.
STORAGE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.ENAMETOOLONG)


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes end like every other bad input: one line naming the command, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree with every subcommand whose module is present."""
    parser = OneLineParser(prog="ifgan", description="InterFaceGAN in JAX: sample, score, edit, invert.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"ifgan_jax.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"ifgan_jax.cli.{name}":
                continue  # subcommand not built yet
            raise
        module.register(sub)
    return parser


def _bad_input_types() -> tuple[type[BaseException], ...]:
    from ifgan_jax.errors import CheckpointError, InputError, MissingWheelError

    return (InputError, CheckpointError, MissingWheelError, FileNotFoundError, PermissionError,
            IsADirectoryError, NotADirectoryError)


def _enable_compilation_cache() -> None:
    """Persist XLA executables under $IFGAN_HOME/xla so repeated CLI runs skip most compile time."""
    import jax

    from ifgan_jax.model_cache import cache_home

    if os.environ.get("IFGAN_NO_COMPILATION_CACHE"):
        return
    jax.config.update("jax_compilation_cache_dir", str(cache_home() / "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def main(argv: list[str] | None = None) -> int:
    """Parse, run, and map bad input to one line on stderr with exit code 2."""
    args = build_parser().parse_args(argv)
    _enable_compilation_cache()
    try:
        result = args.func(args)
    except _bad_input_types() as err:
        print(f"ifgan {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as err:
        if err.errno not in STORAGE_ERRORS:
            raise
        where = f" ({err.filename})" if err.filename else ""
        print(f"ifgan {args.command}: error: {err.strerror}{where}; free space (or fix the folder) and rerun the same "
              "command to resume", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"ifgan {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return int(result or 0)

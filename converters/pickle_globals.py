"""Globals every allow-list unpickler here may hand out: numpy's array reconstructors and byte decoding."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy._core import multiarray, numeric  # numpy's own pickle reconstructors

from ifgan_jax.errors import CheckpointError


def codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """`_codecs.encode`: Python 3 writes bytes into protocol 0-2 pickles as encode(str, 'latin1'); only that."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8"):
        raise CheckpointError("pickle calls _codecs.encode with unexpected arguments")
    return text.encode(encoding)


def numpy_globals() -> dict[tuple[str, str], Any]:
    """(module, name) -> the numpy callables that rebuild arrays and scalars, under old and new module names."""
    found: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core", "numpy._core"):
        found[(f"{module}.multiarray", "_reconstruct")] = multiarray._reconstruct
        found[(f"{module}.multiarray", "scalar")] = multiarray.scalar
        found[(f"{module}.numeric", "_frombuffer")] = numeric._frombuffer
    return found

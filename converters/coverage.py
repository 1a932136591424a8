"""Check that a flat state dict has exactly the expected keys and shapes, reporting every problem at once."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from ifgan_jax.errors import CheckpointError


def check_state_dict(
    state_dict: Mapping[str, np.ndarray],
    expected: Mapping[str, tuple[int, ...]],
    *,
    optional: Iterable[str] = (),
    what: str = "state dict",
) -> None:
    """Raise one CheckpointError listing missing, unexpected and mis-shaped keys."""
    optional = set(optional)
    missing = [k for k in expected if k not in state_dict and k not in optional]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k}: got {tuple(np.shape(state_dict[k]))}, expected {tuple(shape)}"
        for k, shape in expected.items()
        if k in state_dict and tuple(np.shape(state_dict[k])) != tuple(shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if mismatched:
        problems.append(f"shape mismatches [{'; '.join(mismatched)}]")
    if problems:
        raise CheckpointError(f"{what} does not match the architecture: " + ", ".join(problems))

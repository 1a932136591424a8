"""Conversion tables: their rows and transforms (torch layout -> ours), and the check that a flat state dict has
exactly the expected keys and shapes, reporting every problem at once."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from ifgan_jax.errors import CheckpointError

Transform = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Entry:
    """One row of a conversion table."""

    source: str  # state-dict key in the file
    dest: tuple[str, ...]  # ("params" | "buffers", *path)
    shape: tuple[int, ...]  # expected shape in the state dict
    transform: Transform


def fill_trees(state: Mapping[str, Any], entries: Iterable[Entry], what: str,
               check: Callable[[Entry, np.ndarray], None] | None = None) -> tuple[dict, dict]:
    """(params, buffers) pytrees from a checked state dict: each entry's value, numeric and finite (else a
    CheckpointError naming it), as float32, through `check(entry, value)` when given, transformed into place."""
    trees: dict[str, dict] = {"params": {}, "buffers": {}}
    for e in entries:
        value = np.asarray(state[e.source])
        if value.dtype.kind not in "fiu":
            raise CheckpointError(f"{what}: {e.source} has dtype {value.dtype}, expected floating point")
        value = value.astype(np.float32, copy=False)
        if not np.isfinite(value).all():
            raise CheckpointError(f"{what}: {e.source} holds NaN or infinite values")
        if check is not None:
            check(e, value)
        node = trees[e.dest[0]]
        for part in e.dest[1:-1]:
            node = node.setdefault(part, {})
        node[e.dest[-1]] = np.array(e.transform(value), order="C")  # copies once
    return trees["params"], trees["buffers"]


def same(x: np.ndarray) -> np.ndarray:
    return x


def linear(x: np.ndarray) -> np.ndarray:
    return x.T  # torch Linear (out, in) -> (in, out)


def oihw_to_hwio(x: np.ndarray) -> np.ndarray:
    return x.transpose(2, 3, 1, 0)  # torch conv (out, in, kh, kw) -> (kh, kw, in, out)


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


def check_against_model(params: dict, buffers: dict, shapes: tuple[dict, dict], what: str) -> None:
    """The converted trees must have exactly the model's structure and shapes (guards a conversion table)."""

    def flat(tree: Any, prefix: str = "") -> dict[str, tuple]:
        out = {}
        for k, v in tree.items():
            out.update(flat(v, f"{prefix}{k}/") if isinstance(v, dict) else {f"{prefix}{k}": tuple(v.shape)})
        return out

    for got, want, name in ((params, shapes[0], "params"), (buffers, shapes[1], "buffers")):
        if flat(got) != flat(want):
            diff = sorted(set(flat(got).items()) ^ set(flat(want).items()))[:6]
            raise AssertionError(f"{what}: converted {name} do not match the model: {diff}")

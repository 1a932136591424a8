"""Globals every allow-list unpickler here may hand out: numpy's array reconstructors, byte decoding, and
argparse.Namespace read as an inert record (PickledNamespace)."""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator
from contextvars import ContextVar
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


# -- argparse.Namespace as an inert record -----------------------------------------------------------------

NAMESPACE_GLOBAL = ("argparse", "Namespace")
_MAX_RECORD_DEPTH = 32  # nesting inside one record's values; argparse values are flat in practice
_PLAIN_SCALARS = (type(None), bool, int, float, complex, str, bytes, np.generic)
# id -> (original, checked copy) for the load in progress; see record_memo().
_LOAD_MEMO: ContextVar[dict[Any, tuple[Any, Any]] | None] = ContextVar("pickled_namespace_memo", default=None)


@contextlib.contextmanager
def record_memo() -> Iterator[None]:
    """Held by a reader around one load: the records it builds share one memo, so data the pickle shares (its
    own memo GETs) is checked and copied once per load however many records name it -- the work stays
    proportional to the file. The originals are kept alive in it (their ids stay unique) until the load ends."""
    token = _LOAD_MEMO.set({})
    try:
        yield
    finally:
        _LOAD_MEMO.reset(token)


class PickledNamespace:
    """What a pickled `argparse.Namespace` becomes: a frozen, read-only record of its attributes.

    Training scripts save their options beside the weights (rosinality's `train.py`: `'args'`; pSp / e4e /
    ReStyle: `'opts'`). pickle writes one as `GLOBAL argparse Namespace`, `EMPTY_TUPLE`, `NEWOBJ` (that is
    `cls.__new__(cls)`), then the attribute dict and `BUILD`. The allow-lists map that global to this class:
    argparse is never imported, nothing is called but this class's own `__new__` / `__setstate__`, and the
    state is accepted once, only as a dict of str keys to plain data (None, bool, numbers, str, bytes, numpy
    values and arrays, nested lists / tuples / dicts / sets of those, other records). Its containers are
    copied, so later opcodes cannot reach into the record (arrays are the reader's own and stay shared).
    Anything else -- constructor arguments, a second BUILD, another kind of state -- is a CheckpointError.

    Read it as `rec.size` or `rec["size"]`; `"size" in rec`, `len(rec)`, iteration (names) and `as_dict()`
    (a fresh dict) work too. Nothing can be set on it.
    """

    __slots__ = ("_fields", "_built")

    def __new__(cls, *args: Any, **kwargs: Any) -> PickledNamespace:
        if args or kwargs:  # NEWOBJ / REDUCE with arguments: argparse's writer never passes any
            raise CheckpointError("pickle constructs an argparse.Namespace with arguments")
        self = super().__new__(cls)
        object.__setattr__(self, "_fields", {})
        object.__setattr__(self, "_built", False)
        return self

    def __setstate__(self, state: Any) -> None:
        if self._built:
            raise CheckpointError("pickle sets the state of an argparse.Namespace twice")
        if not isinstance(state, dict):
            raise CheckpointError(f"argparse.Namespace state is a {type(state).__name__}, not a dict")
        memo = _LOAD_MEMO.get()
        memo = {} if memo is None else memo
        hit = memo.get(("state", id(state)))  # one state dict BUILT into many records is checked once
        if hit is None:
            fields = {}
            for name, value in state.items():
                if not isinstance(name, str):
                    raise CheckpointError(f"argparse.Namespace has a non-str attribute name ({type(name).__name__})")
                fields[name] = _plain_copy(value, f"argparse.Namespace attribute {name[:40]!r}", memo, 0)
            hit = memo[("state", id(state))] = (state, fields)
        object.__setattr__(self, "_fields", hit[1])
        object.__setattr__(self, "_built", True)

    def __setattr__(self, name: str, value: Any) -> None:
        raise CheckpointError(f"pickle tries to set attribute {str(name)[:40]!r} on an argparse.Namespace")

    def __delattr__(self, name: str) -> None:
        raise CheckpointError(f"pickle tries to delete attribute {str(name)[:40]!r} of an argparse.Namespace")

    def __getattr__(self, name: str) -> Any:  # only called for names the class itself does not define
        fields = object.__getattribute__(self, "_fields")
        if name.startswith("__") or name not in fields:
            raise AttributeError(name)
        return fields[name]

    def __getitem__(self, name: str) -> Any:
        return self._fields[name]

    def __contains__(self, name: object) -> bool:
        return name in self._fields

    def __iter__(self) -> Any:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:  # (so unhashable, like argparse.Namespace)
        return isinstance(other, PickledNamespace) and self._fields == other._fields

    def __getstate__(self) -> dict[str, Any]:  # copy.copy / deepcopy rebuild it through __setstate__
        return dict(self._fields)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._fields)

    def __repr__(self) -> str:
        return "PickledNamespace(" + ", ".join(f"{k}={v!r}" for k, v in self._fields.items()) + ")"


def _plain_copy(value: Any, what: str, memo: dict[Any, tuple[Any, Any]], depth: int) -> Any:
    """`value` if it is plain data, containers copied (shared ones once, via `memo`); else CheckpointError."""
    if isinstance(value, _PLAIN_SCALARS) or isinstance(value, PickledNamespace):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise CheckpointError(f"{what} is an object array")
        return value
    hit = memo.get(id(value))
    if hit is not None:
        return hit[1]
    if depth >= _MAX_RECORD_DEPTH:
        raise CheckpointError(f"{what} is nested too deeply (or refers to itself)")
    if isinstance(value, dict):
        copied: Any = (OrderedDict if isinstance(value, OrderedDict) else dict)(
            (_plain_copy(k, what, memo, depth + 1), _plain_copy(v, what, memo, depth + 1)) for k, v in value.items())
    elif isinstance(value, list | tuple | set | frozenset):
        kind = next(t for t in (list, tuple, set, frozenset) if isinstance(value, t))
        copied = kind(_plain_copy(v, what, memo, depth + 1) for v in value)
    else:
        raise CheckpointError(f"{what} is a {type(value).__name__}, which an argparse.Namespace may not hold")
    memo[id(value)] = (value, copied)
    return copied


def namespace_globals() -> dict[tuple[str, str], Any]:
    """The allow-list entry that reads a pickled `argparse.Namespace` as a PickledNamespace (see there)."""
    return {NAMESPACE_GLOBAL: PickledNamespace}

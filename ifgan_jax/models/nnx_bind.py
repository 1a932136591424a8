"""Run flax.nnx modules as pure functions of plain params/buffers pytrees."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
from flax import nnx


@dataclasses.dataclass(frozen=True)
class BoundModule:
    """An nnx module's structure without weights; `apply` merges plain dicts into it inside jit."""

    graphdef: Any
    param_state: Any  # abstract nnx.State of nnx.Param variables
    buffer_state: Any  # abstract nnx.State of every other variable (BatchStat, noise, ...)

    def apply(self, params: dict, buffers: dict, fn: Callable[..., Any], *args: Any) -> Any:
        """Merge `params`/`buffers` into the module and return `fn(module, *args)`."""
        param_state = jax.tree.map(lambda x: x, self.param_state)
        nnx.replace_by_pure_dict(param_state, params)
        buffer_state = jax.tree.map(lambda x: x, self.buffer_state)
        nnx.replace_by_pure_dict(buffer_state, buffers)
        return fn(nnx.merge(self.graphdef, param_state, buffer_state), *args)

    def shapes(self) -> tuple[dict, dict]:
        """Expected (params, buffers) shapes as pure dicts of ShapeDtypeStruct."""
        return nnx.to_pure_dict(self.param_state), nnx.to_pure_dict(self.buffer_state)


def bind(make_module: Callable[[nnx.Rngs], nnx.Module]) -> BoundModule:
    """Trace a module constructor abstractly (no weights are allocated) and keep its structure."""
    abstract = nnx.eval_shape(lambda: make_module(nnx.Rngs(0)))
    graphdef, param_state, buffer_state = nnx.split(abstract, nnx.Param, ...)
    return BoundModule(graphdef, param_state, buffer_state)

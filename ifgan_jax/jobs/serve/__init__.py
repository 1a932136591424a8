"""`serve`: the interactive editor, a local web page with one slider per boundary.

`handler.py` is the HTTP side (the standard library's server, one endpoint per action); `state.py` everything
the endpoints do, without HTTP (`Editor`: boundaries, render, codes by id, uploads inverted).
"""

from __future__ import annotations

from ifgan_jax.jobs.serve.handler import DEFAULT_HOST, DEFAULT_PORT, EditorServer, make_server, run, url
from ifgan_jax.jobs.serve.state import (
    MAX_JSON_BYTES,
    MAX_UPLOAD_BYTES,
    MAX_UPLOAD_PIXELS,
    BoundarySet,
    Editor,
    RequestError,
    build_editor,
    load_boundary_set,
    shipped_boundary_paths,
)

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "MAX_JSON_BYTES",
    "MAX_UPLOAD_BYTES",
    "MAX_UPLOAD_PIXELS",
    "BoundarySet",
    "Editor",
    "EditorServer",
    "RequestError",
    "build_editor",
    "load_boundary_set",
    "make_server",
    "run",
    "shipped_boundary_paths",
    "url",
]

"""`serve`'s HTTP side: the interactive editor, a local web page with one slider per boundary.

The standard library's ThreadingHTTPServer serves one static page (package data) and one endpoint per action,
so every action can be scripted with curl or urllib as well as clicked:

    GET  /                     the page (ifgan_jax/data/serve/index.html; nothing else is served from disk)
    GET  /api/info             model, boundaries (the sliders), score labels, inversion settings, limits
    POST /api/render           {"seed": S | "code_id": ID | "code": [...], "offsets": {name: d}, "conditional": b}
                               -> image/png; headers X-Code-Id (the edited code's id) and X-Scores (JSON)
    POST /api/scores           the same body -> {"code_id": ID, "scores": {label: value}}
    POST /api/invert           an image file as the body -> {"code_id", "code", "psnr", "init", "steps", "seconds"}
    GET  /api/status           the running inversion's progress
    GET  /api/codes/ID.npy     a code as a (1, d) float32 .npy (download)
    GET  /api/codes/ID.png     its image (download)

Every error is a 4xx (5xx for a bug) with a one-line JSON body {"error": "..."}; nothing else is ever sent.
The request checks and the state live in state.py; this module only maps HTTP onto them.
"""

from __future__ import annotations

import errno
import importlib.resources
import json
import re
import signal
import socket
import sys
import threading
import time
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ifgan_jax.errors import InputError
from ifgan_jax.generator import load_generator
from ifgan_jax.jobs.demo import PREDICTOR as DEMO_PREDICTOR
from ifgan_jax.jobs.serve.state import (
    DEFAULT_SPACE,
    MAX_JSON_BYTES,
    MAX_UPLOAD_BYTES,
    Editor,
    RequestError,
    build_editor,
)
from ifgan_jax.zoo.registry import DEFAULT_MODEL

DEFAULT_HOST = "127.0.0.1"  # local only: exposing the editor is an explicit --host 0.0.0.0
DEFAULT_PORT = 8080
REQUEST_TIMEOUT_S = 60.0  # a connection idle this long is dropped (a stalled client holds no thread forever)
DRAIN_LIMIT = 64 * 1024 * 1024  # an oversized body is read and dropped up to this, so the client sees the 413
DRAIN_CHUNK = 1 << 16
PAGE = "index.html"
CODE_PATH = re.compile(r"/api/codes/([0-9a-f]{1,64})\.(npy|png)")


def page_bytes() -> bytes:
    """The editor's one page, read from package data."""
    return (importlib.resources.files("ifgan_jax") / "data" / "serve" / PAGE).read_bytes()


class EditorServer(ThreadingHTTPServer):
    """A threading HTTP server holding the Editor and the page; request threads are daemons."""

    daemon_threads = True
    editor: Editor | None = None
    page: bytes = b""


class Handler(BaseHTTPRequestHandler):
    """One JSON/PNG endpoint per action (see the module docstring); errors are one-line JSON."""

    server: EditorServer
    protocol_version = "HTTP/1.1"  # keep-alive: a slider drag is many small requests on one connection
    timeout = REQUEST_TIMEOUT_S

    def version_string(self) -> str:
        return "ifgan-serve"  # no Python version in the Server header

    # -- responses -----------------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj: Any, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Every error, the server's own (a malformed request line, an unknown method) included: one JSON line."""
        text = message or HTTPStatus(code).phrase
        body = (json.dumps({"error": " ".join(str(text).split())}) + "\n").encode()
        self.log_error("%d %s", code, text)
        self.close_connection = True  # as the standard library does: after an error the stream may be out of step
        try:
            self._send(code, body, "application/json")
        except OSError:  # the client went away
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a slider drag is dozens of requests a second: no access log

    def log_error(self, format: str, *args: Any) -> None:
        if args and args[0] == HTTPStatus.INTERNAL_SERVER_ERROR:  # a bug; the rest is the client's business
            sys.stderr.write(f"ifgan serve: {format % args}\n")

    # -- request bodies ------------------------------------------------------------------------------------
    def _body(self, limit: int) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            raise RequestError(411, "chunked bodies are not supported; send a Content-Length")
        length = self.headers.get("Content-Length")
        if length is None:
            raise RequestError(411, "a Content-Length header is required")
        try:
            n = int(length)
        except ValueError:
            raise RequestError(400, f"Content-Length must be an integer, got {length!r}") from None
        if n < 0:
            raise RequestError(400, f"Content-Length must be >= 0, got {n}")
        if n > limit:
            self._drain(n)
            raise RequestError(413, f"request body of {n} bytes is over the limit of {limit} bytes")
        data = self.rfile.read(n)
        if len(data) != n:
            raise RequestError(400, f"the body ended after {len(data)} of {n} bytes")
        return data

    def _drain(self, n: int) -> None:
        """Read and drop an oversized body (up to DRAIN_LIMIT) so the client gets to read the 413."""
        self.close_connection = True
        left = min(n, DRAIN_LIMIT)
        while left > 0:
            chunk = self.rfile.read(min(left, DRAIN_CHUNK))
            if not chunk:
                break
            left -= len(chunk)

    def _json_body(self) -> dict[str, Any]:
        data = self._body(MAX_JSON_BYTES)
        try:
            request = json.loads(data or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RequestError(400, f"the body is not valid JSON: {err}") from None
        if not isinstance(request, dict):
            raise RequestError(400, "the body must be a JSON object")
        return request

    # -- routing -------------------------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        editor = self.server.editor
        path = urllib.parse.urlsplit(self.path).path
        try:
            if editor is None:
                raise RequestError(503, "the model is still loading; retry in a few seconds")
            if method == "GET":
                self._get(editor, path)
            else:
                self._post(editor, path)
        except RequestError as err:
            self.send_error(err.status, str(err))
        except InputError as err:
            self.send_error(400, str(err))
        except (TimeoutError, ConnectionError):  # the client stalled or went away mid-request: nobody to answer
            self.close_connection = True
        except Exception as err:  # a bug: one line to the client, the type and message to the server's stderr
            self.send_error(500, f"internal error ({type(err).__name__}: {err})")

    def _get(self, editor: Editor, path: str) -> None:
        if path in ("/", f"/{PAGE}"):
            self._send(200, self.server.page, "text/html; charset=utf-8")
        elif path == "/api/info":
            self._json(editor.info())
        elif path == "/api/status":
            self._json(editor.status())
        elif match := CODE_PATH.fullmatch(path):
            key, kind = match.groups()
            if kind == "npy":
                self._send(200, editor.code_npy(key), "application/octet-stream",
                           {"Content-Disposition": f'attachment; filename="code_{key}.npy"'})
            else:
                self._send(200, editor.code_png(key), "image/png",
                           {"Content-Disposition": f'attachment; filename="face_{key}.png"'})
        else:
            raise RequestError(404, f"no such page: {path} (the editor is at /, the API under /api/)")

    def _post(self, editor: Editor, path: str) -> None:
        if path == "/api/render":
            rendered = editor.render(self._json_body())
            self._send(200, rendered.png, "image/png",
                       {"X-Code-Id": rendered.code_id, "X-Scores": json.dumps(rendered.scores)})
        elif path == "/api/scores":
            rendered = editor.render(self._json_body())
            self._json({"code_id": rendered.code_id, "scores": rendered.scores})
        elif path == "/api/invert":
            self._json(editor.invert(self._body(MAX_UPLOAD_BYTES)))
        else:
            raise RequestError(404, f"no such endpoint: POST {path}")

    def do_GET(self) -> None:  # noqa: N802 (BaseHTTPRequestHandler's names)
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_HEAD(self) -> None:  # noqa: N802 (GET's headers; `_send` leaves the body out)
        self._dispatch("GET")

    def _not_allowed(self) -> None:
        self.send_error(HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} is not allowed: the editor takes GET and POST")

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed


def make_server(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, editor: Editor | None = None) -> EditorServer:
    """Bind the server (port 0: any free port); InputError for a port in use or an unknown host."""
    if not 0 <= port <= 65535:
        raise InputError(f"--port must be in [0, 65535], got {port}")
    try:
        server = EditorServer((host, port), Handler)
    except socket.gaierror as err:
        raise InputError(f"--host {host!r} is not an address of this machine ({err.strerror})") from None
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise InputError(f"port {port} on {host} is already in use; pick another with --port") from None
        if err.errno in (errno.EADDRNOTAVAIL, errno.EACCES):
            raise InputError(f"cannot listen on {host}:{port}: {err.strerror}") from None
        raise
    server.page = page_bytes()
    server.editor = editor
    return server


def url(server: EditorServer) -> str:
    """The address the server listens on, as a URL."""
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/"


def run(*, model: str = DEFAULT_MODEL, weights: str | None = None, boundary_paths: list[str] | None = None,
        host: str | None = None, port: int | None = None, predictor: str | None = None,
        invert_steps: int | None = None, devices: int | None = None, micro_batch: int | None = None,
        space: str | None = None, noise_mode: str | None = None) -> int:
    """The `serve` command: bind first (a port in use fails at once), load and warm the model, serve until ^C.

    None picks the default: DEFAULT_HOST, DEFAULT_PORT, the demo's predictor ('none': no scores), the model's
    shipped boundaries, the inversion's steps (state.INVERT_STEPS_*), Z codes (space 'w': StyleGAN's W).
    """
    server = make_server(DEFAULT_HOST if host is None else host, DEFAULT_PORT if port is None else port)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop_on_sigterm)  # `kill`, systemd, docker stop: the same clean stop as ^C
    try:
        t = time.perf_counter()
        G = load_generator(model, weights=weights, micro_batch=micro_batch, devices=devices)
        editor, note = build_editor(G, boundary_paths, predictor=DEMO_PREDICTOR if predictor is None else predictor,
                                    invert_steps=invert_steps, space=DEFAULT_SPACE if space is None else space,
                                    noise_mode=noise_mode)
        if note:
            print(f"ifgan serve: {note}", file=sys.stderr)
        server.editor = editor
        # The inversion compiles in the background: sliders work at once, an upload a few seconds later.
        threading.Thread(target=_warm_quietly, args=(editor,), daemon=True).start()
        names = ", ".join(editor.boundaries.names) or "no boundaries"
        print(f"ifgan serve: {G.name} with {names}; ready in {time.perf_counter() - t:.1f} s at {url(server)} "
              "(Ctrl-C to stop)", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        print("ifgan serve: stopped", file=sys.stderr)
    finally:
        server.server_close()
        if server.editor is not None:
            server.editor.close()  # a request or the warm-up may still be inside XLA: let it finish first
    return 0


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _warm_quietly(editor: Editor) -> None:
    try:
        editor.warm_invert()
    except Exception as err:  # an upload then compiles it itself and reports any error
        if not editor.closing:
            print(f"ifgan serve: inversion warm-up skipped ({type(err).__name__}: {err})", file=sys.stderr)

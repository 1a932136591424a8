"""The interactive editor's state, without HTTP: boundaries and their conditioned directions, one pure render
(codes x offsets -> uint8 images + scores, jitted), codes kept by id, and photo uploads decoded safely
(`images.decode_image`) and inverted. `handler.py` maps HTTP requests onto `Editor`'s methods; every check on a
request lives here.

Edits are relative (InterFaceGAN's `linear_interpolate` without the hyperplane reset): the shown code is
`x + sum_k offset_k * n_k` with `n_k` the unit boundaries, so all offsets at 0 give the source face back.
With `conditional`, each `n_k` is replaced by `n_k` projected orthogonal to every other boundary loaded
(`project_boundary`), so a slider moves its attribute and leaves the others' hyperplane distances unchanged.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import importlib.resources
import io
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ifgan_jax import latents
from ifgan_jax.boundary import boundary_name, load_boundary, project_boundary
from ifgan_jax.errors import InputError, MissingWheelError
from ifgan_jax.files import encode_png
from ifgan_jax.generator import Generator
from ifgan_jax.images import ImageTooLarge, decode_image
from ifgan_jax.inversion import invert, make_plan
from ifgan_jax.inversion.encoder import shipped_encoder_dir
from ifgan_jax.jobs.demo import PREDICTOR as DEMO_PREDICTOR
from ifgan_jax.predictors import Predictor, load_predictor
from ifgan_jax.scoring import make_score_head

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # a photo upload; larger bodies get 413 before any decoding
MAX_UPLOAD_PIXELS = 40_000_000  # width x height read from the header, checked before the pixels are decoded
MAX_JSON_BYTES = 256 * 1024  # a render request: a code of a 512-d model as JSON is ~12 KB
MAX_OFFSET = 20.0  # |offset| along a unit boundary; the page's sliders stop at SLIDER_RANGE
SLIDER_RANGE = 3.0  # InterFaceGAN's edit range (-3 .. 3)
MAX_CODES = 4096  # codes kept by id (seeds, uploads, edits); the oldest are forgotten first
CODE_ID_HEX = 16  # a code's id: the first hex digits of the sha256 of its float32 bytes
INVERT_STEPS_ENCODER = 50  # refinement steps after the shipped encoder (~32 dB in-domain, about a second)
INVERT_STEPS_OPTIMIZE = 200  # a short optimization where the model has no encoder
DEFAULT_SPACE = "z"  # sliders move Z codes, as InterFaceGAN edits PGGAN and the default DCGAN
SPACES = ("z", "w")  # W for StyleGAN models, where InterFaceGAN trains their boundaries
NO_PREDICTOR = "none"
INVERT_WAIT_S = 300.0  # the longest an upload waits for the inversion before it (a compile, a long optimization)
CLOSE_TIMEOUT_S = 120.0  # at shutdown, the longest wait for a running computation (a compile, an inversion)


class RequestError(InputError):
    """A bad request with its HTTP status (InputError itself is a 400)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True)
class BoundarySet:
    """The sliders: names, unit boundaries (K, d) and each one made orthogonal to the others (or why not)."""

    names: tuple[str, ...]
    sources: tuple[str, ...]
    primal: np.ndarray  # (K, d) float32, unit rows
    conditioned: np.ndarray | None  # (K, d) float32, row k orthogonal to every other primal row
    conditional_note: str = ""  # why `conditioned` is None


def shipped_boundary_paths(model: str) -> list[Path]:
    """The boundaries shipped for a model in ifgan_jax/data/boundaries/MODEL/ (sorted), or []."""
    folder = importlib.resources.files("ifgan_jax") / "data" / "boundaries" / model
    if not folder.is_dir():
        return []
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".npy"))


def conditioned_rows(primal: np.ndarray) -> np.ndarray:
    """Row k of `primal` projected orthogonal to all other rows (InputError when they are dependent)."""
    rows = [project_boundary(b, *np.delete(primal, k, axis=0)) for k, b in enumerate(primal)]
    return np.concatenate(rows).astype(np.float32) if rows else np.zeros_like(primal)


def load_boundary_set(paths: list[str | os.PathLike], latent_dim: int) -> BoundarySet:
    """Boundary files -> BoundarySet; InputError for a bad file, a wrong dimension or a repeated name."""
    names, rows = [], []
    for path in paths:
        b = load_boundary(path)
        if b.shape[1] != latent_dim:
            raise InputError(f"boundary {Path(path).name} has dim {b.shape[1]}, but the model's codes have "
                             f"dim {latent_dim}")
        name = boundary_name(path)
        if name in names:
            raise InputError(f"two boundaries are named {name!r} ({Path(path).name}); rename one")
        names.append(name)
        row = b[0].astype(np.float64)
        rows.append(row / np.linalg.norm(row))
    primal = np.stack(rows).astype(np.float32) if rows else np.zeros((0, latent_dim), np.float32)
    conditioned, note = None, ""
    try:
        conditioned = conditioned_rows(primal)
    except InputError as err:  # e.g. happy_c_surprise loaded beside happy and surprise: in their span
        note = f"conditional edits are off: {err}"
    return BoundarySet(tuple(names), tuple(str(p) for p in paths), primal, conditioned, note)


@jax.jit
def offset_codes(codes: jax.Array, offsets: jax.Array, directions: jax.Array) -> jax.Array:
    """codes (N, d) + offsets (N, K) @ directions (K, d): the relative edit of every code at once."""
    return codes + offsets @ directions


def make_renderer(G: Generator, predictor: Predictor | None, space: str = DEFAULT_SPACE,
                  noise_mode: str | None = None) -> Callable[..., dict[str, np.ndarray]]:
    """A pure render: (codes (N, d), offsets (N, K), directions (K, d)) -> {codes, images uint8, scores}.

    noise_mode 'random' draws the noise once, from a fixed key: a slider moves the code and nothing else.

    The edit and the synthesis (with the predictor's scoring fused in) are jitted; every call of one batch
    size reuses one compiled program, so after a warm-up call a slider move costs only the compute.
    """
    head = make_score_head(predictor, with_images=True) if predictor is not None else None
    noise = {"noise_mode": G.check_noise_mode(noise_mode)}
    if noise_mode == "random":
        noise["key"] = jax.random.key(0)

    def render(codes: Any, offsets: Any, directions: Any) -> dict[str, np.ndarray]:
        edited = offset_codes(jnp.asarray(codes, jnp.float32), jnp.asarray(offsets, jnp.float32),
                              jnp.asarray(directions, jnp.float32))
        if head is None:
            images = G.synthesize_uint8(edited, space, **noise)
            scores = np.zeros((edited.shape[0], 0), np.float32)
        else:
            out = G.synthesize_with(edited, head, predictor.params, space, **noise)
            images, scores = out["images"], out["scores"]
        return {"codes": np.asarray(edited), "images": np.asarray(images), "scores": np.asarray(scores)}

    return render


def code_id(code: np.ndarray) -> str:
    """A code's id: a content hash, so the same code always has the same id."""
    return hashlib.sha256(np.ascontiguousarray(code, np.float32).tobytes()).hexdigest()[:CODE_ID_HEX]


class CodeStore:
    """Codes by id, the newest MAX_CODES kept (thread-safe: requests run on server threads)."""

    def __init__(self, capacity: int = MAX_CODES):
        self._codes: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def put(self, code: np.ndarray) -> str:
        key = code_id(code)
        with self._lock:
            self._codes[key] = np.array(code, np.float32)
            self._codes.move_to_end(key)
            while len(self._codes) > self._capacity:
                self._codes.popitem(last=False)
        return key

    def get(self, key: str) -> np.ndarray:
        with self._lock:
            if key not in self._codes:
                raise RequestError(404, f"unknown code id {key!r} (ids come from /api/render or /api/invert and "
                                        f"the newest {self._capacity} are kept)")
            self._codes.move_to_end(key)
            return self._codes[key]


def decode_upload(data: bytes, resolution: int) -> np.ndarray:
    """Uploaded image bytes -> uint8 (R, R, 3) (`images.decode_image` under the upload limits); RequestError
    413 for an upload over a limit, 400 for anything else that is not a usable image."""
    try:
        return decode_image(data, resolution, max_bytes=MAX_UPLOAD_BYTES, max_pixels=MAX_UPLOAD_PIXELS,
                            name="the upload")
    except ImageTooLarge as err:
        raise RequestError(413, str(err)) from None
    except InputError as err:
        raise RequestError(400, str(err)) from None


def npy_bytes(array: np.ndarray) -> bytes:
    """An array as the bytes of a .npy file."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array, np.float32), allow_pickle=False)
    return buffer.getvalue()


@dataclasses.dataclass
class Rendered:
    """One render's answer: the PNG, the edited code's id (kept for downloads) and the scores by label."""

    png: bytes
    code_id: str
    scores: dict[str, float]


class Editor:
    """Everything the editor's endpoints do, for one generator, one BoundarySet and an optional predictor."""

    def __init__(self, G: Generator, boundaries: BoundarySet, predictor: Predictor | None = None, *,
                 invert_steps: int | None = None, space: str = DEFAULT_SPACE, noise_mode: str | None = None):
        if space not in SPACES or space not in G.spaces:
            raise InputError(f"--space must be one of {', '.join(s for s in SPACES if s in G.spaces)} for {G.name}, "
                             f"got {space!r}")
        if G.latent_dim != boundaries.primal.shape[1]:
            raise InputError(f"boundaries have dim {boundaries.primal.shape[1]}, {G.name} codes {G.latent_dim}")
        self.G, self.boundaries, self.predictor = G, boundaries, predictor
        self.labels = tuple(predictor.labels) if predictor is not None else ()
        self.codes = CodeStore()
        self.space = space
        self._render = make_renderer(G, predictor, space, noise_mode)
        encoder = shipped_encoder_dir(G.name, space)
        self.invert_init = "encoder" if encoder is not None else None  # None: the inversion's default init
        if invert_steps is None:
            invert_steps = INVERT_STEPS_ENCODER if encoder is not None else INVERT_STEPS_OPTIMIZE
        # One plan, built and checked once; micro_batch=1: a lone photo runs without padding.
        # Uploads invert with the stored noise when the sliders draw random noise (a fixed objective).
        self.plan = make_plan(G, space, init=self.invert_init, steps=invert_steps, micro_batch=1, seed=0,
                              noise_mode="const" if noise_mode == "random" else noise_mode)
        self._invert_lock = threading.Lock()
        self._inverting: dict[str, Any] | None = None
        self._seconds_per_step: float | None = None
        self._active = 0  # computations running on request threads (see `close`)
        self._idle = threading.Condition()
        self.closing = False

    # -- lifetime ------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _computing(self) -> Iterator[None]:
        """Count a device computation; refused once `close` has begun."""
        with self._idle:
            if self.closing:
                raise RequestError(503, "the server is stopping")
            self._active += 1
        try:
            yield
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> bool:
        """Refuse new computations and wait for the running ones (True when none is left).

        Request threads are daemons; one still inside XLA when the interpreter exits would abort the process
        (a C++ frame unwound by the thread's exit), so `serve` waits here before returning. Every JAX call of
        a request runs inside `_computing`.
        """
        with self._idle:
            self.closing = True
            return self._idle.wait_for(lambda: self._active == 0, timeout)

    # -- facts ---------------------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """The model, the sliders, the score labels, the inversion settings and the limits (GET /api/info)."""
        b = self.boundaries
        return {
            "model": self.G.name, "resolution": self.G.resolution, "latent_dim": self.G.latent_dim, "space": self.space,
            "boundaries": [{"name": n, "file": Path(s).name} for n, s in zip(b.names, b.sources, strict=True)],
            "labels": list(self.labels),
            "conditional": {"available": b.conditioned is not None, "note": b.conditional_note},
            "invert": {"init": self.plan.init, "steps": self.plan.steps},
            "slider_range": SLIDER_RANGE, "max_offset": MAX_OFFSET, "max_seed": latents.MAX_SEED - 1,
            "max_upload_bytes": MAX_UPLOAD_BYTES, "max_upload_pixels": MAX_UPLOAD_PIXELS,
        }

    # -- requests ------------------------------------------------------------------------------------------
    def source_code(self, request: dict[str, Any]) -> np.ndarray:
        """The code a request starts from: exactly one of seed, code_id, code; (1, d) float32."""
        given = [k for k in ("seed", "code_id", "code") if request.get(k) is not None]
        if len(given) != 1:
            raise InputError(f"give exactly one of seed, code_id, code (got {', '.join(given) or 'none'})")
        if "seed" in given:
            z = self.G.sample_latents(latents.check_seed(request["seed"]), 0, 1)
            return self.G.codes_from_z(z, self.space)  # W: seed's Z mapped, as `sample`
        if "code_id" in given:
            if not isinstance(request["code_id"], str):
                raise InputError(f"code_id must be a string, got {request['code_id']!r}")
            return self.codes.get(request["code_id"])[None]
        code = request["code"]
        if not isinstance(code, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                 for v in code):
            raise InputError(f"code must be a list of {self.G.latent_dim} numbers")
        return self.G.check_codes(np.asarray(code, np.float64)[None], self.space)

    def offsets_row(self, request: dict[str, Any]) -> np.ndarray:
        """offsets {name: value} -> (1, K) float32 in slider order; unknown names and bad values refused."""
        offsets = request.get("offsets") or {}
        if not isinstance(offsets, dict):
            raise InputError('offsets must be an object {"boundary name": distance, ...}')
        names = self.boundaries.names
        row = np.zeros((1, len(names)), np.float32)
        for name, value in offsets.items():
            if name not in names:
                raise InputError(f"unknown boundary {name!r}; boundaries: {', '.join(names) or 'none loaded'}")
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not (number and math.isfinite(value) and abs(value) <= MAX_OFFSET):
                raise InputError(f"offset of {name!r} must be a number in [-{MAX_OFFSET:g}, {MAX_OFFSET:g}], "
                                 f"got {value!r}")
            row[0, names.index(name)] = value
        return row

    def directions(self, request: dict[str, Any], offsets: np.ndarray) -> np.ndarray:
        """The primal boundaries, or with conditional: true the conditioned ones."""
        conditional = request.get("conditional", False)
        if not isinstance(conditional, bool):
            raise InputError(f"conditional must be true or false, got {conditional!r}")
        if not conditional:
            return self.boundaries.primal
        if self.boundaries.conditioned is None:
            if not offsets.any():
                return self.boundaries.primal  # nothing moves: the same image either way
            raise InputError(self.boundaries.conditional_note)
        return self.boundaries.conditioned

    def render(self, request: dict[str, Any]) -> Rendered:
        """POST /api/render and /api/scores: the edited code's PNG, its id (kept for downloads), its scores."""
        if not isinstance(request, dict):
            raise InputError("the request body must be a JSON object")
        with self._computing():  # a seed's code is a JAX computation too
            code = self.source_code(request)
            offsets = self.offsets_row(request)
            out = self._render(code, offsets, self.directions(request, offsets))
        key = self.codes.put(out["codes"][0])
        scores = {label: float(v) for label, v in zip(self.labels, out["scores"][0], strict=True)}
        return Rendered(encode_png(out["images"][0]), key, scores)

    def code_npy(self, key: str) -> bytes:
        """GET /api/codes/ID.npy: the code as a (1, d) float32 .npy."""
        return npy_bytes(self.codes.get(key)[None])

    def code_png(self, key: str) -> bytes:
        """GET /api/codes/ID.png: the code's image."""
        return self.render({"code_id": key}).png

    # -- inversion -----------------------------------------------------------------------------------------
    def invert(self, data: bytes) -> dict[str, Any]:
        """POST /api/invert: an uploaded photo -> its code (kept by id), PSNR of the reconstruction, timing."""
        target = decode_upload(data, self.G.resolution)
        # One inversion at a time (the warm-up's included); the next waits its turn.
        if not self._invert_lock.acquire(timeout=INVERT_WAIT_S):
            raise RequestError(503, f"another inversion has been running for over {INVERT_WAIT_S:g} s; retry later")
        try:
            t = time.perf_counter()
            expected = None if self._seconds_per_step is None else self._seconds_per_step * self.plan.steps
            self._inverting = {"steps": self.plan.steps, "started": t, "expected_s": expected}
            with self._computing():
                result = invert(self.G, target[None], self.plan)
            seconds = time.perf_counter() - t
            if self.plan.steps:
                self._seconds_per_step = seconds / self.plan.steps
        finally:
            self._inverting = None
            self._invert_lock.release()
        code = result.codes[0]
        return {"code_id": self.codes.put(code), "code": code.tolist(), "psnr": float(result.psnr[0]),
                "init": result.init, "steps": int(result.steps[0]), "seconds": round(seconds, 3)}

    def status(self) -> dict[str, Any]:
        """GET /api/status: the running inversion's progress (elapsed against the last one's pace), or null."""
        running = self._inverting
        if running is None:
            return {"invert": None}
        elapsed = time.perf_counter() - running["started"]
        expected = running["expected_s"]
        return {"invert": {"steps": running["steps"], "elapsed_s": round(elapsed, 3),
                           "expected_s": None if expected is None else round(expected, 3),
                           "fraction": None if not expected else min(elapsed / expected, 1.0)}}

    # -- warm-up -------------------------------------------------------------------------------------------
    def warm_render(self) -> None:
        """Compile the render at its one batch shape, so the first slider move is fast."""
        self.render({"seed": 0, "offsets": dict.fromkeys(self.boundaries.names[:1], 1.0)})

    def warm_invert(self) -> None:
        """Compile the inversion on a generated face (run in the background: a photo may come later)."""
        self.invert(self.render({"seed": 0}).png)


def load_editor_predictor(name: str | None) -> tuple[Predictor | None, str]:
    """The predictor shown beside the image (None or 'none': no scores) and a note when it could not load."""
    if name is None or name.strip().lower() == NO_PREDICTOR:
        return None, ""
    try:
        return load_predictor(name), ""
    except MissingWheelError as err:  # the scores are a help, not the point: serve without them
        if name != DEMO_PREDICTOR:
            raise
        return None, f"scores hidden: {err}"


def build_editor(G: Generator, boundary_paths: list[str | os.PathLike] | None = None, *,
                 predictor: str | None = DEMO_PREDICTOR, invert_steps: int | None = None,
                 space: str = DEFAULT_SPACE, noise_mode: str | None = None) -> tuple[Editor, str]:
    """A warmed-up Editor for G: the given boundaries (None: the model's shipped ones) and predictor; and a note.

    A predictor that cannot score this model's images (e.g. faces too small for the landmarks) is dropped
    with a note: the editor works without scores.
    """
    paths = shipped_boundary_paths(G.name) if boundary_paths is None else list(boundary_paths)
    boundaries = load_boundary_set(paths, G.latent_dim)
    scorer, note = load_editor_predictor(predictor)
    editor = Editor(G, boundaries, scorer, invert_steps=invert_steps, space=space, noise_mode=noise_mode)
    try:
        editor.warm_render()
    except InputError as err:
        if scorer is None:
            raise
        editor = Editor(G, boundaries, None, invert_steps=invert_steps, space=space, noise_mode=noise_mode)
        editor.warm_render()
        note = f"scores hidden: predictor {scorer.name!r} cannot score {G.name}'s images ({err})"
    return editor, note

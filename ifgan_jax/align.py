"""Face alignment for real photos by dlib's 5 landmarks: place the eyes and nose where the model has them.

    template = estimate_template(G)                      # the model's mean 5 points, from generated faces
    aligned = align_faces(photos, G.resolution, template)  # uint8 faces (N, R, R, 3) + transforms
    photo2 = paste_back(photo, edited_face, aligned.transforms[i])

Finding the face: no detector. dlib's HOG face detector is C++ code with its own model, which no installed
wheel ships, and a portrait-style photo has one face near its centre; so the face box is the one you give
per photo or, by default, a central square: 3/4 of the photo's shorter side (S/8 .. 7S/8, as for generated
faces), 1/2 and 0.35 of it (`START_SIZES`). The landmarks found in a box give a better box (the box in which
dlib's mean shape best fits them, by scale and shift) and are found again there, `REFINE` times: a face
somewhat off-centre or of another size converges onto itself. The largest start whose box settled (moved
under `SETTLED` of its side in the last round) is kept, else the one that moved least. The cascade runs on
a fixed-size crop around each box (`WORK` px), so photos of any size share one compiled program. A face
that is small and far from the centre needs its box.

A photo is skipped (with the reason, for `failed.json`) when no face is found: the face box is blank (gray
levels with a standard deviation under `MIN_CONTRAST`), the boxes did not settle (the last refinement moved
the box by over `MAX_DRIFT` of its side: measured on generated faces under 0.17, typically 0.006, while on
random noise 0.1 to 0.2), the eyes are under `MIN_EYE_DISTANCE` px apart, or the landmarks' centre is
outside the photo (a face larger than a tight crop is fine). Without a detector this is a plausibility
check, not face detection: the cascade always draws some face-like 5 points, and a textured photo without
a face can pass it.

The warp is the least-squares similarity (rotation, uniform scale, shift) from the photo's 5 points to the
template's, applied with Pillow's bicubic filter; a face much larger than the output is first shrunk by an
integer factor with a box filter (no aliasing), and pixels beyond the photo's edges repeat the edge.
Transforms are 2 x 3 matrices from photo pixels to face pixels (pixel centres at integers, x then y).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from PIL import Image

from ifgan_jax.errors import InputError
from ifgan_jax.generator import Generator
from ifgan_jax.predictors import landmarks as lm
from ifgan_jax.predictors.base import Predictor

WORK = 128  # px: the crop the cascade runs on (its default box is then 112 .. 16 px inside: 95 px)
REFINE = 3  # boxes re-fitted to the landmarks found
START_SIZES = (0.75, 0.5, 0.35)  # the central boxes tried first, in shorter sides of the photo
SETTLED = 0.05  # a start whose last refinement moved the box less than this is taken (the largest such)
MAX_DRIFT = 0.25  # the last refinement's largest move of a box edge, in box sides
MIN_CONTRAST = 2.0  # standard deviation of the gray levels in the face box
MIN_EYE_DISTANCE = 4.0  # photo pixels between the eye midpoints
TEMPLATE_FACES = 256
TEMPLATE_MIN_SIZE = 128  # generated faces smaller than this are enlarged for the template's landmarks


@dataclasses.dataclass
class Alignment:
    """Aligned faces (N, R, R, 3) uint8 for the photos that have one, with their indices into the input,
    transforms (N, 2, 3) photo pixel -> face pixel, photo landmarks (N, 5, 2), and the skipped photos."""

    faces: np.ndarray
    indices: list[int]
    transforms: np.ndarray
    landmarks: np.ndarray
    failures: list[dict[str, Any]]  # {"index": i, "reason": text}


def estimate_template(G: Generator, count: int = TEMPLATE_FACES, seed: int = 0) -> np.ndarray:
    """The mean landmarks (5, 2) of `count` faces of G, as fractions of the frame (x / R, y / R, pixel
    centres at (i + 0.5) / R); faces under TEMPLATE_MIN_SIZE px are enlarged first for finer points."""
    if count < 1:
        raise InputError(f"the template needs at least one face, got count={count}")
    upsample = max(1, min(lm.MAX_UPSAMPLE, math.ceil(TEMPLATE_MIN_SIZE / G.resolution)))
    predictor = lm.landmarks_predictor(upsample=upsample)
    codes = G.sample_latents(seed=seed, start=0, count=count)
    points = np.asarray(predictor(G.synthesize_uint8(codes), batch_size=64), np.float64).reshape(count, 5, 2)
    return ((points.mean(axis=0) + 0.5) / G.resolution).astype(np.float64)


def align_faces(photos: Sequence[np.ndarray], resolution: int, template: np.ndarray, *,
                boxes: Sequence[Sequence[int] | None] | None = None,
                predictor: Predictor | None = None) -> Alignment:
    """Landmarks, similarity transform and warp for each uint8 photo (H, W, 3); see the module docstring.

    `boxes`: a dlib rectangle (left, top, right, bottom) per photo, or None for the default box.
    `predictor`: a `landmarks_predictor()` to reuse (it holds the cascade's weights).
    """
    template = _check_template(template)
    if boxes is not None and len(boxes) != len(photos):
        raise InputError(f"{len(boxes)} face boxes for {len(photos)} photos")
    predictor = predictor or lm.landmarks_predictor()
    photos = [_check_photo(p, i) for i, p in enumerate(photos)]
    # Every photo without a box starts from each of START_SIZES; the start whose boxes settle best wins.
    starts = [[_first_box(p, boxes[i])] if boxes is not None and boxes[i] is not None
              else [_first_box(p, None, size) for size in START_SIZES] for i, p in enumerate(photos)]
    owner = [i for i, group in enumerate(starts) for _ in group]
    runs = [p for i, group in enumerate(starts) for _ in group for p in [photos[i]]]
    current = [box for group in starts for box in group]
    for _ in range(REFINE + 1):
        points = _landmarks(predictor, runs, current)
        fitted = [_box_from_points(predictor, pts) for pts in points]
        drift = np.array([np.abs(a - b).max() / max(b[2] - b[0], 1e-6) for a, b in zip(current, fitted, strict=True)])
        current = fitted
    best: dict[int, int] = {}  # the first (largest) start that settled, else the one that moved least
    for k, i in enumerate(owner):
        settled = i in best and drift[best[i]] <= SETTLED
        if i not in best or (not settled and drift[k] < drift[best[i]]):
            best[i] = k
    points = np.stack([points[best[i]] for i in range(len(photos))]) if photos else np.zeros((0, 5, 2))
    current = [current[best[i]] for i in range(len(photos))]
    drift = np.array([drift[best[i]] for i in range(len(photos))])
    target = template * resolution - 0.5
    faces, indices, transforms, found, failures = [], [], [], [], []
    for i, (photo, pts) in enumerate(zip(photos, points, strict=True)):
        reason = _why_not_a_face(photo, pts, current[i], drift[i])
        if reason:
            failures.append({"index": i, "reason": reason})
            continue
        transform = similarity(pts, target)
        faces.append(warp(photo, transform, resolution))
        indices.append(i)
        transforms.append(transform)
        found.append(pts)
    empty = np.zeros((0, resolution, resolution, 3), np.uint8)
    return Alignment(np.stack(faces) if faces else empty, indices,
                     np.asarray(transforms, np.float64).reshape(-1, 2, 3),
                     np.asarray(found, np.float64).reshape(-1, 5, 2), failures)


def similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The least-squares similarity (2, 3) taking points `source` (K, 2) to `target` (K, 2) (Umeyama, no
    reflection): target ~ M @ [x, y, 1]."""
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    mean_s, mean_t = source.mean(axis=0), target.mean(axis=0)
    s, t = source - mean_s, target - mean_t
    norm = np.sum(s**2)
    if norm == 0:
        raise InputError("the landmarks coincide: no transform")
    a = np.sum(s * t) / norm
    b = np.sum(s[:, 0] * t[:, 1] - s[:, 1] * t[:, 0]) / norm
    rotate_scale = np.array([[a, -b], [b, a]])
    return np.concatenate([rotate_scale, (mean_t - rotate_scale @ mean_s)[:, None]], axis=1)


def warp(photo: np.ndarray, transform: np.ndarray, resolution: int) -> np.ndarray:
    """The R x R face of `photo` under `transform` (photo pixel -> face pixel), bicubic, edges repeated."""
    transform = np.asarray(transform, np.float64)
    scale = math.sqrt(abs(np.linalg.det(transform[:, :2])))
    shrink = max(1, int(1.0 / (2.0 * scale))) if scale > 0 else 1
    image = Image.fromarray(np.ascontiguousarray(photo))
    if shrink > 1:  # box-filter first, so the bicubic never skips photo pixels (no aliasing)
        image = image.reduce(shrink)
    # Corner coordinates (Pillow's: pixel i spans [i, i + 1)) of the reduced photo -> of the face.
    forward = _corner_transform(transform) @ np.diag([shrink, shrink, 1.0])
    inverse = np.linalg.inv(forward)
    corners = inverse @ np.array([[0, resolution, 0, resolution], [0, 0, resolution, resolution], [1, 1, 1, 1]])
    pad = int(max(0.0, -corners[:2].min(), corners[0].max() - image.width, corners[1].max() - image.height)) + 3
    padded = Image.fromarray(np.pad(np.asarray(image), ((pad, pad), (pad, pad), (0, 0)), mode="edge"))
    coeffs = (np.array([[1, 0, pad], [0, 1, pad], [0, 0, 1]]) @ inverse)[:2].ravel()
    face = padded.transform((resolution, resolution), Image.Transform.AFFINE, tuple(coeffs),
                            resample=Image.Resampling.BICUBIC)
    return np.asarray(face)


def paste_back(photo: np.ndarray, face: np.ndarray, transform: np.ndarray, *, feather: float = 0.1) -> np.ndarray:
    """`photo` with `face` (R x R, e.g. edited) warped back where `transform` took it from, blended in over
    a margin of `feather` of the face's side (0: a hard edge)."""
    photo = _check_photo(photo, 0)
    face = np.asarray(face, np.uint8)
    if face.ndim != 3 or face.shape[0] != face.shape[1] or face.shape[2] != 3:
        raise InputError(f"the face must be uint8 (R, R, 3), got {face.shape}")
    if not 0.0 <= feather <= 0.5:
        raise InputError(f"feather must be in [0, 0.5], got {feather}")
    r = face.shape[0]
    forward = _corner_transform(np.asarray(transform, np.float64))
    inverse = np.linalg.inv(forward)
    corners = inverse @ np.array([[0, r, 0, r], [0, 0, r, r], [1, 1, 1, 1]])
    h, w = photo.shape[:2]
    left, top = max(0, int(math.floor(corners[0].min()))), max(0, int(math.floor(corners[1].min())))
    right, bottom = min(w, int(math.ceil(corners[0].max()))), min(h, int(math.ceil(corners[1].max())))
    if right <= left or bottom <= top:
        return photo.copy()
    # photo corner coordinates of the region -> face corner coordinates
    coeffs = tuple((forward @ np.array([[1, 0, left], [0, 1, top], [0, 0, 1]]))[:2].ravel())
    size = (right - left, bottom - top)
    warped = np.asarray(Image.fromarray(face).transform(size, Image.Transform.AFFINE, coeffs,
                                                        resample=Image.Resampling.BICUBIC), np.float64)
    mask = Image.fromarray((_feather_mask(r, feather) * 255).astype(np.uint8))
    alpha = np.asarray(mask.transform(size, Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR),
                       np.float64)[..., None] / 255.0
    out = photo.astype(np.float64)
    region = out[top:bottom, left:right]
    out[top:bottom, left:right] = region * (1.0 - alpha) + warped * alpha
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


# --- helpers ----------------------------------------------------------------------------------------------------


def _feather_mask(size: int, feather: float) -> np.ndarray:
    ramp = max(feather * size, 1e-6)
    centres = np.arange(size) + 0.5
    edge = np.minimum(centres, size - centres) / ramp
    one = np.clip(edge, 0.0, 1.0)
    return np.minimum(one[:, None], one[None, :])


def _corner_transform(transform: np.ndarray) -> np.ndarray:
    """3 x 3 affine in corner coordinates (centre + 0.5) for a 2 x 3 one in centre coordinates."""
    m = np.vstack([transform, [0.0, 0.0, 1.0]])
    shift = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    return shift @ m @ np.linalg.inv(shift)


def _check_template(template: Any) -> np.ndarray:
    template = np.asarray(template, np.float64)
    if template.shape != (5, 2) or not np.all(np.isfinite(template)):
        raise InputError(f"the template must be 5 finite (x, y) points, got shape {template.shape}")
    return template


def _check_photo(photo: Any, index: int) -> np.ndarray:
    photo = np.asarray(photo)
    if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3:
        raise InputError(f"photo {index} must be uint8 (H, W, 3), got {photo.dtype} {photo.shape}")
    return photo


def _first_box(photo: np.ndarray, box: Sequence[int] | None, size: float = 0.75) -> np.ndarray:
    """The given box, or a central square of `size` times the photo's shorter side."""
    h, w = photo.shape[:2]
    if box is not None:
        return np.asarray(lm.check_box(box, h, w), np.float64)
    side = min(h, w) * size
    if side < lm.MIN_FACE:
        raise InputError(f"a {w} x {h} photo is too small to find a face in (a face box of at least "
                         f"{lm.MIN_FACE} px)")
    left, top = (w - side) / 2.0, (h - side) / 2.0
    return np.array([left, top, left + side - 1.0, top + side - 1.0])


def _landmarks(predictor: Predictor, photos: list[np.ndarray], boxes: list[np.ndarray]) -> np.ndarray:
    """Landmarks (N, 5, 2) in photo pixels: each box cut out (with a margin) to WORK px and run there."""
    crops, maps = [], []
    inner = np.asarray(lm.default_box(WORK, WORK), np.float64)
    for photo, box in zip(photos, boxes, strict=True):
        # The affine taking photo centre coordinates to crop ones, the box onto the crop's default box.
        scale = (inner[2] - inner[0]) / max(box[2] - box[0], 1e-6)
        transform = np.array([[scale, 0.0, inner[0] - scale * box[0]], [0.0, scale, inner[1] - scale * box[1]]])
        crops.append(warp(photo, transform, WORK))
        maps.append(transform)
    points = np.asarray(predictor(jnp.asarray(np.stack(crops)), batch_size=64), np.float64).reshape(-1, 5, 2)
    out = np.empty_like(points)
    for i, transform in enumerate(maps):
        scale, shift = transform[0, 0], transform[:, 2]
        out[i] = (points[i] - shift) / scale
    return out


def _box_from_points(predictor: Predictor, points: np.ndarray) -> np.ndarray:
    """The box in which dlib's mean shape fits `points` best by scale and shift: the cascade's own frame."""
    mean_shape = np.asarray(predictor.params["initial_shape"], np.float64)
    centred = mean_shape - mean_shape.mean(axis=0)
    scale = np.sum(centred * (points - points.mean(axis=0))) / np.sum(centred**2)
    corner = points.mean(axis=0) - scale * mean_shape.mean(axis=0)
    return np.array([corner[0], corner[1], corner[0] + scale, corner[1] + scale])


def _why_not_a_face(photo: np.ndarray, points: np.ndarray, box: np.ndarray, drift: float) -> str:
    if not np.all(np.isfinite(points)) or not np.all(np.isfinite(box)):
        return "no face found (the landmarks are not finite)"
    h, w = photo.shape[:2]
    centre = points.mean(axis=0)
    if not (0 <= centre[0] <= w - 1 and 0 <= centre[1] <= h - 1):
        return "no face found: the landmarks' centre lies outside the photo"
    left, top = int(np.clip(box[0], 0, w - 1)), int(np.clip(box[1], 0, h - 1))
    right, bottom = int(np.clip(box[2], 0, w - 1)), int(np.clip(box[3], 0, h - 1))
    region = photo[top : bottom + 1, left : right + 1].astype(np.float64)
    contrast = float(region.sum(axis=-1).std() / 3.0)
    if contrast < MIN_CONTRAST:
        return f"no face found: the face region is blank (gray level deviation {contrast:.1f})"
    if drift > MAX_DRIFT:
        return (f"no face found: the landmarks did not settle (the face box still moved by {drift:.2f} of its "
                f"side; give a face box)")
    eyes = np.linalg.norm(points[:2].mean(axis=0) - points[2:4].mean(axis=0))
    if eyes < MIN_EYE_DISTANCE:
        return f"no face found: the eyes are {eyes:.1f} px apart (at least {MIN_EYE_DISTANCE:g} needed)"
    return ""

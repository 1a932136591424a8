"""Load user images for inversion with Pillow: any mode -> RGB, center crop, resize, NHWC in [-1, 1].

Sources: a folder (its files, sorted by name; hidden files and sub-folders are ignored), a single image
file, or a uint8 ``.npy`` of shape (N, H, W, 3) (also (N, H, W) / (N, H, W, 1) gray, (N, H, W, 4) RGBA).
A file that is not an image, is corrupt, or is smaller than ``MIN_SIZE`` pixels is a *failure* (name and
reason), not an exception, so one bad file does not stop a large job. ``decode_image`` takes a file's bytes
(serve's photo uploads) under byte and pixel limits.

Conversions: 16-bit gray ('I;16*', and 'I', taken as 16-bit as it comes from 16-bit PNG/TIFF) is scaled
to 8 bits by value, not clipped as Pillow's ``convert`` would; float 'F' images are taken as [0, 1] when
their maximum is <= 1 and [0, 255] otherwise; transparency (RGBA, LA, PA, palette transparency) is
composited over white; EXIF orientation is applied.
"""

from __future__ import annotations

import dataclasses
import io
import os
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ifgan_jax.errors import InputError

MIN_SIZE = 8  # smaller images carry no face to invert; report them instead of upscaling noise
BACKGROUND = (255, 255, 255)  # transparent pixels become white
# The formats decode_image takes; others (EPS would run Ghostscript) are refused from the header.
DECODE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")


class ImageTooLarge(InputError):
    """Image bytes over a size limit (bytes, or pixels in the header): serve answers 413, not 400."""


@dataclasses.dataclass
class LoadedImages:
    """Images ready for a model: uint8 (N, R, R, 3), their source names, and the inputs that failed."""

    uint8: np.ndarray
    names: list[str]
    failures: list[dict[str, str]]  # {"source": name, "reason": text}

    @property
    def images(self) -> np.ndarray:
        """float32 (N, R, R, 3) in [-1, 1] (the inverse of InterFaceGAN's uint8 postprocessing)."""
        return to_float(self.uint8)

    def __len__(self) -> int:
        return len(self.names)


# -- [-1, 1] <-> uint8: InterFaceGAN's conventions, here once (host: numpy; device: jax.numpy) ---------------


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 images -> float32 in [-1, 1] on the host: u / 127.5 - 1."""
    return np.asarray(images, dtype=np.float32) / np.float32(127.5) - np.float32(1.0)


def to_float_on_device(images: Any) -> jax.Array:
    """uint8 images -> float32 in [-1, 1] inside a jit (XLA may multiply by the reciprocal: 1 ulp from
    `to_float`)."""
    return jnp.asarray(images, jnp.float32) / 127.5 - 1.0


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Raw [-1, 1] float images -> uint8 on the host, InterFaceGAN's postprocess clip((x + 1) * 127.5 + 0.5, 0, 255)."""
    return np.clip((images + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)


def postprocess(images: Any) -> jax.Array:
    """`to_uint8` on the device (Generator.synthesize_uint8: a quarter of the transfer)."""
    x = jnp.asarray(images, dtype=jnp.float32)
    return jnp.clip((x + 1.0) * 127.5 + 0.5, 0.0, 255.0).astype(jnp.uint8)


def to_uint8_values(images: jax.Array) -> jax.Array:
    """`postprocess` kept as float32 integers (truncated), for predictors that take their bytes as floats."""
    return jnp.floor(jnp.clip((images + 1.0) * 127.5 + 0.5, 0.0, 255.0))


def to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow image -> uint8 (H, W, 3), handling 16-bit, float, palette and alpha modes by value."""
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        # Pillow's convert('RGB') clips 16-bit values at 255 (a white image); scale by the value range.
        gray = np.asarray(image).astype(np.float64)
        gray = np.clip(np.rint(gray / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        gray = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0)
        if gray.size and gray.max() <= 1.0:
            gray = gray * 255.0
        gray = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))


def fit(rgb: np.ndarray, resolution: int, *, crop: bool = True) -> np.ndarray:
    """Center-crop to a square (unless crop=False: stretch) and resize to resolution x resolution."""
    h, w = rgb.shape[:2]
    if crop:
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        box = (left, top, left + side, top + side)
    else:
        box = (0, 0, w, h)
    if (box[2] - box[0], box[3] - box[1]) == (resolution, resolution):
        return np.ascontiguousarray(rgb[box[1] : box[3], box[0] : box[2]])  # exact, no resampling
    # Crop first: resize(box=...) would let the filter read pixels outside the square.
    image = Image.fromarray(np.ascontiguousarray(rgb[box[1] : box[3], box[0] : box[2]]))
    return np.asarray(image.resize((resolution, resolution), Image.Resampling.LANCZOS))


def load_image(path: str | os.PathLike, resolution: int, *, crop: bool = True) -> np.ndarray:
    """One image file -> uint8 (R, R, 3); InputError (with the reason) when it cannot be used."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. DecompressionBombWarning, bad EXIF: the result still loads
            with Image.open(path) as image:
                rgb = _pixels(image)
    except UnidentifiedImageError:
        raise InputError(f"{path.name}: not an image Pillow can read") from None
    except Image.DecompressionBombError as err:
        raise InputError(f"{path.name}: {err}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise InputError(f"{path.name}: corrupt or unreadable image ({type(err).__name__}: {err})") from None
    return _check_and_fit(rgb, resolution, crop, path.name)


def decode_image(data: bytes, resolution: int, *, max_bytes: int, max_pixels: int, name: str = "the image",
                 formats: tuple[str, ...] = DECODE_FORMATS, crop: bool = True) -> np.ndarray:
    """Image file bytes (an upload) -> uint8 (R, R, 3) as `load_image` makes it; InputError, or ImageTooLarge
    past max_bytes or max_pixels. `name` starts each message.

    The size in the header is checked against max_pixels before any pixel is decoded, so a small file that
    would decompress into gigabytes (a decompression bomb) is refused cheaply.
    """
    if len(data) > max_bytes:
        raise ImageTooLarge(f"{name} of {len(data)} bytes is over the limit of {max_bytes} bytes")
    if not data:
        raise InputError(f"{name} is empty (0 bytes)")
    size = rgb = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's DecompressionBombWarning: max_pixels decides
            with Image.open(io.BytesIO(data), formats=formats) as image:  # reads the header only
                size = image.size
                if size[0] * size[1] <= max_pixels:
                    rgb = _pixels(image)
    except UnidentifiedImageError:
        raise InputError(f"{name} is not an image in one of {', '.join(formats)}") from None
    except Image.DecompressionBombError as err:
        raise ImageTooLarge(f"{name} is too large to decode: {err}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise InputError(f"{name} is a corrupt image ({type(err).__name__}: {err})") from None
    if rgb is None:
        raise ImageTooLarge(f"{name} is {size[0]}x{size[1]} px, over the limit of {max_pixels} pixels")
    return _check_and_fit(rgb, resolution, crop, name)


def _pixels(image: Image.Image) -> np.ndarray:
    """An opened image's pixels as uint8 (H, W, 3), its EXIF orientation applied."""
    image.load()
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block should not lose the pixels
        pass
    return to_rgb(image)


def _check_and_fit(rgb: np.ndarray, resolution: int, crop: bool, name: str) -> np.ndarray:
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIZE:
        raise InputError(f"{name}: image is {w}x{h} px, smaller than {MIN_SIZE} px")
    return fit(rgb, resolution, crop=crop)


def load_images(source: str | os.PathLike, resolution: int, *, crop: bool = True) -> LoadedImages:
    """A folder, an image file, or a uint8 .npy -> LoadedImages (InputError when nothing usable is there)."""
    source = Path(source)
    if not source.exists():
        raise InputError(f"image source {source} does not exist")
    if source.is_dir():
        return _load_folder(source, resolution, crop)
    if source.suffix.lower() == ".npy":
        return _load_npy(source, resolution, crop)
    return LoadedImages(load_image(source, resolution, crop=crop)[None], [source.name], [])


def _load_folder(folder: Path, resolution: int, crop: bool) -> LoadedImages:
    try:
        files = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and not p.is_dir())
    except OSError as err:
        raise InputError(f"cannot list {folder}: {err.strerror or err}") from None
    if not files:
        raise InputError(f"image folder {folder} is empty")
    images, names, failures = [], [], []
    for path in files:
        try:
            images.append(load_image(path, resolution, crop=crop))
            names.append(path.name)
        except InputError as err:
            failures.append({"source": path.name, "reason": str(err).removeprefix(f"{path.name}: ")})
    return _stack(images, names, failures, resolution)


def _load_npy(path: Path, resolution: int, crop: bool) -> LoadedImages:
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError, EOFError) as err:
        raise InputError(f"cannot read image file {path}: {err}") from None
    if array.dtype != np.uint8:
        raise InputError(f"{path.name}: images .npy must be uint8 (N, H, W, 3), got dtype {array.dtype}")
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3, 4):
        raise InputError(f"{path.name}: images .npy must have shape (N, H, W, 3), got {array.shape}")
    if len(array) == 0:
        raise InputError(f"{path.name} holds no images")
    images, names, failures = [], [], []
    for i in range(len(array)):
        name = f"{path.name}[{i}]"
        item = np.asarray(array[i])
        if item.shape[-1] == 1:
            item = np.repeat(item, 3, axis=2)
        elif item.shape[-1] == 4:
            item = to_rgb(Image.fromarray(np.ascontiguousarray(item)))
        try:
            images.append(_check_and_fit(item, resolution, crop, name))
            names.append(name)
        except InputError as err:
            failures.append({"source": name, "reason": str(err).removeprefix(f"{name}: ")})
    return _stack(images, names, failures, resolution)


def _stack(images: list, names: list[str], failures: list[dict[str, str]], resolution: int) -> LoadedImages:
    array = np.stack(images) if images else np.zeros((0, resolution, resolution, 3), np.uint8)
    return LoadedImages(array, names, failures)

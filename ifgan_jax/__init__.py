"""ifgan-jax: InterFaceGAN (Shen et al., CVPR 2020) in JAX/Flax, built for throughput."""

from ifgan_jax.errors import InputError
from ifgan_jax.generator import Generator, load_generator, postprocess
from ifgan_jax.registry import DEFAULT_MODEL, MODELS

__version__ = "0.1.0"

__all__ = ["DEFAULT_MODEL", "MODELS", "Generator", "InputError", "load_generator", "postprocess", "__version__"]

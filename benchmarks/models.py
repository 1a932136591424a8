"""The generators under test: a Generator for each `-m` spec and, when available, its torch reference runners."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import jax
import numpy as np

from benchmarks.config import parse_model_spec
from benchmarks.harness import platform_name
from benchmarks.references import REFERENCE_SEED
from converters.interfacegan import convert_state_dict
from ifgan_jax.errors import InputError
from ifgan_jax.generator import Generator, load_generator
from ifgan_jax.models.stylegan import num_layers_for
from ifgan_jax.zoo.registry import family_module


@dataclasses.dataclass
class BenchModel:
    """A generator under test and, when available, its torch reference runners."""

    spec: str
    G: Generator
    reference: dict[str, Callable[[np.ndarray], np.ndarray]]  # impl name -> fn(z codes) -> uint8 NHWC images
    notes: list[str]


def _random_tree(shapes: Any, seed: int) -> Any:
    # InterFaceGAN's own init: weights (equalized-lr, so unit normal) and noise maps ~ N(0, 1), the rest 0.
    rng = np.random.default_rng(seed)

    def leaf(path: tuple, s: Any) -> np.ndarray:
        name = str(getattr(path[-1], "key", path[-1]))
        if name in ("weight", "noise", "const", "first_layer") or len(s.shape) >= 2:
            return rng.standard_normal(s.shape).astype(s.dtype)
        return np.zeros(s.shape, s.dtype)

    return jax.tree_util.tree_map_with_path(leaf, shapes)


def _family_config(family: str, resolution: int) -> tuple[ModuleType, Any]:
    module = family_module(family)
    if family == "stylegan":
        return module, module.Config(resolution=resolution, truncation_layers=min(8, num_layers_for(resolution)))
    return module, module.Config(resolution=resolution)


def load_bench_model(spec: str, *, reference: ModuleType | None, interfacegan_repo: Path | None,
                     devices: int | None = None) -> BenchModel:
    """A Generator for `spec` plus the torch runners of `reference` (load_torch_reference; None: JAX only)."""
    notes: list[str] = []
    parsed = parse_model_spec(spec)
    ref_gen = None  # InterFaceGAN's torch generator, when it is the reference
    if parsed is None:
        try:
            G = load_generator(spec, devices=devices)
        except ValueError as err:
            raise InputError(f"model {spec!r}: {err}") from None
        family, resolution = G.family, G.resolution
    else:
        family, resolution = parsed
        G = None
    runners: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    if reference is not None and family == "dcgan":
        runners, why = reference.dcgan_runners(G.latent_dim)
        if why:
            notes.append(why)
    elif reference is not None and family in ("pggan", "stylegan"):
        if interfacegan_repo is None:
            notes.append(f"{spec}: torch reference skipped (give --interfacegan-repo for InterFaceGAN's modules)")
        else:
            ref_gen = reference.interfacegan_generator(interfacegan_repo, family, resolution)
    if G is None:
        module, config = _family_config(family, resolution)
        if ref_gen is not None:
            # Same random weights on both sides, through the project's own converter.
            _, config, params, buffers = convert_state_dict(reference.interfacegan_state_dict(ref_gen), family)
        else:
            shapes = module.param_shapes(config)
            params, buffers = _random_tree(shapes[0], REFERENCE_SEED), _random_tree(shapes[1], REFERENCE_SEED + 1)
            if "lod" in buffers:  # InterFaceGAN's lod 0 = the full-resolution output
                buffers["lod"] = np.zeros((), np.float32)
            if "synthesis" in buffers and "lod" in buffers["synthesis"]:
                buffers["synthesis"]["lod"] = np.zeros((), np.float32)
            notes.append(f"{spec}: random weights (seed {REFERENCE_SEED}); throughput does not depend on values")
        G = Generator(spec, module.architecture(config), params, buffers, devices=devices)
    if ref_gen is not None:
        runners = reference.interfacegan_runners(ref_gen, family)
    if runners and platform_name() == "cpu":
        runners = reference.with_one_thread_variants(runners)
    return BenchModel(spec, G, runners, notes)

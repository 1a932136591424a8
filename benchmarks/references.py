"""The other side of each comparison: the torch reference module, InterFaceGAN's code, sklearn's SVC.

torch stays optional: `load_torch_reference` imports `benchmarks.torch_reference` by name and, when torch is
missing, returns why instead. InterFaceGAN's `models` and `utils` packages are imported from a checkout by
path (`--interfacegan-repo`), under private names, so they never collide with anything installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ifgan_jax.errors import InputError

REFERENCE_SEED = 0  # the seed of the random weights both sides share
# The torch reference runners, imported by name so that torch is never required (see load_torch_reference).
TORCH_REFERENCE_MODULE = "benchmarks.torch_reference"

BoundaryFit = Callable[[np.ndarray, np.ndarray], np.ndarray]  # codes (N, d), scores (N, 1) -> unit normal (1, d)


def load_torch_reference() -> tuple[ModuleType | None, str | None]:
    """The torch reference runners (TORCH_REFERENCE_MODULE), or None and why they cannot be imported."""
    try:
        return importlib.import_module(TORCH_REFERENCE_MODULE), None
    except ImportError as err:
        return None, f"cannot import {TORCH_REFERENCE_MODULE} ({err}); install torch in this Python to time it"


def import_interfacegan(repo: Path, package: str) -> Any:
    """Import InterFaceGAN's `models` or `utils` package from a checkout, by path, under a private name."""
    name = f"_interfacegan_{package}"
    if name in sys.modules:
        return sys.modules[name]
    init = Path(repo) / package / "__init__.py"
    if not init.is_file():
        raise InputError(f"{repo} is not an InterFaceGAN checkout (no {package}/__init__.py)")
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(init.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def quiet_logger() -> logging.Logger:
    """A logger for InterFaceGAN's modules that drops its warnings."""
    logger = logging.getLogger("ifgan_bench_reference")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    logger.setLevel(logging.ERROR)  # InterFaceGAN warns that no pretrained weights are loaded: intended
    return logger


def interfacegan_train_boundary(repo: Path, *, seed: int = 0, logger: logging.Logger | None = None) -> BoundaryFit:
    """InterFaceGAN's own `utils/manipulator.py` train_boundary from a checkout, one attribute per call."""
    utils = import_interfacegan(repo, "utils")
    manipulator = importlib.import_module(f"{utils.__name__}.manipulator")
    logger = logger or quiet_logger()

    def fit(codes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        # InterFaceGAN uses np.int, removed in numpy 1.24: alias it only for the duration of the call.
        had = "int" in np.__dict__
        if not had:
            np.int = int
        try:
            np.random.seed(seed)  # InterFaceGAN shuffles with the global RNG
            return manipulator.train_boundary(codes, scores, logger=logger)
        finally:
            if not had:
                del np.int

    return fit


def boundary_reference(interfacegan_repo: Path | None) -> tuple[BoundaryFit | None, str]:
    """InterFaceGAN's train_boundary (from a checkout) or the same recipe on sklearn directly; or None and why."""
    try:
        from sklearn import svm  # optional here: without it the boundary reference is skipped
    except ImportError:
        return None, "scikit-learn is not installed"
    if interfacegan_repo is not None:
        return interfacegan_train_boundary(interfacegan_repo), "interfacegan_svc"

    def direct(codes: np.ndarray, scores: np.ndarray, ratio: float = 0.02, split: float = 0.7) -> np.ndarray:
        # InterFaceGAN's recipe: top/bottom 2% by score, 70% of them to train a linear SVC, unit normal.
        order = np.argsort(scores[:, 0])[::-1]
        chosen = min(int(len(codes) * ratio), len(codes) // 2)
        train = int(chosen * split)
        pos, neg = codes[order[:chosen]][:train], codes[order[-chosen:]][:train]
        clf = svm.SVC(kernel="linear").fit(np.concatenate([pos, neg]), np.r_[np.ones(train), np.zeros(train)])
        w = clf.coef_.reshape(1, -1).astype(np.float32)
        return w / np.linalg.norm(w)

    return direct, "sklearn_svc"

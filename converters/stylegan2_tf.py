"""NVIDIA's official StyleGAN2 / StyleGAN2-ADA TensorFlow pickles -> StyleGAN2 params, without TensorFlow.

The generator `Gs` of a pickled `(G, D, Gs)` is a `dnnlib.tflib.network.Network` built by `G_main` with the
components `mapping` (`G_mapping`) and `synthesis` (`G_synthesis_stylegan2`). It is read by
`converters.tf_pickle.load_network_pickle` (an allow-list unpickler: Networks come back as inert dicts, the
embedded `build_module_src` is never run). The static kwargs are checked the way stylegan2-ada-pytorch's
`legacy.py` (`convert_tf_generator`) checks them: unknown ones, and values this port does not implement, are
refused by name. The variables (top level, then `mapping/...` and `synthesis/...`) are renamed to NVlabs'
PyTorch keys by legacy.py's table, relaid out, and converted by `convert_nvlabs_state_dict`: every variable
used once, every shape checked.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from converters.coverage import check_state_dict
from converters.stylegan2_pickle import FAMILY, RESAMPLE_FILTER_2D, convert_nvlabs_state_dict, nvlabs_table
from converters.tf_pickle import STYLEGAN_CLASS, find_generator, load_network_pickle
from ifgan_jax.errors import CheckpointError
from ifgan_jax.models import stylegan2

BUILD_FUNCS = {"": "G_main", "mapping": "G_mapping", "synthesis": "G_synthesis_stylegan2"}
SYNTHESIS_MARK = BUILD_FUNCS["synthesis"].encode()  # spelled out in every such pickle
TF_TO_TORCH_CHANNEL_BASE = 2  # TF's nf(stage) = fmap_base / 2**stage with stage = log2(res) - 1
OPTIONAL_ZERO = ("lod", "synthesis/lod")  # G_main's level of detail (0 in every released model), if present
# legacy.py's kwargs: name -> (default, the values supported; None: any).
KWARGS: dict[str, tuple[Any, Any]] = {
    "latent_size": (512, None), "label_size": (0, (0,)), "dlatent_size": (512, None), "resolution": (1024, None),
    "num_channels": (3, None), "mapping_layers": (8, None), "label_fmaps": (None, None),
    "mapping_fmaps": (None, None), "mapping_nonlinearity": ("lrelu", ("lrelu",)), "mapping_lrmul": (0.01, None),
    "w_avg_beta": (0.995, None), "fmap_base": (16384, None), "fmap_max": (512, None), "num_fp16_res": (0, None),
    "conv_clamp": (None, None), "architecture": ("skip", ("skip",)), "resample_kernel": ([1, 3, 3, 1], None),
    "use_noise": (True, (True,)), "nonlinearity": ("lrelu", ("lrelu",)), "truncation_psi": (None, None),
    "truncation_cutoff": (None, None), "style_mixing_prob": (None, None), "structure": (None, None),
}
Rule = tuple[Callable[[np.ndarray], np.ndarray], Callable[[tuple], tuple]]  # TF -> torch, torch shape -> TF shape
_KEEP: Rule = (lambda x: x, lambda s: s)
_DENSE: Rule = (lambda x: x.T, lambda s: (s[1], s[0]))
_CONV: Rule = (lambda x: x.transpose(3, 2, 0, 1), lambda s: (s[2], s[3], s[1], s[0]))  # HWIO -> OIHW
_CONV_UP: Rule = (lambda x: x[::-1, ::-1].transpose(3, 2, 0, 1), _CONV[1])  # TF's transposed conv is flipped
_CONST: Rule = (lambda x: x[0], lambda s: (1, *s))
_NOISE: Rule = (lambda x: x[0, 0], lambda s: (1, 1, *s))
_MOD_BIAS: Rule = (lambda x: x + 1, lambda s: s)  # TF adds the 1 at run time; NVlabs stores it


def name_table(config: stylegan2.Config) -> dict[str, tuple[str, Rule]]:
    """TF variable -> (NVlabs key, rule), legacy.py's `convert_tf_generator` table for config-f ('skip')."""
    table: dict[str, tuple[str, Rule]] = {"dlatent_avg": ("mapping.w_avg", _KEEP)}
    for i in range(config.mapping_layers):
        table[f"mapping/Dense{i}/weight"] = (f"mapping.fc{i}.weight", _DENSE)
        table[f"mapping/Dense{i}/bias"] = (f"mapping.fc{i}.bias", _KEEP)

    def layer(tf: str, torch: str, weight: Rule) -> None:
        table[f"{tf}/weight"] = (f"{torch}.weight", weight)
        table[f"{tf}/bias"] = (f"{torch}.bias", _KEEP)
        table[f"{tf}/mod_weight"] = (f"{torch}.affine.weight", _DENSE)
        table[f"{tf}/mod_bias"] = (f"{torch}.affine.bias", _MOD_BIAS)

    for res in config.block_resolutions:
        tf, torch = f"synthesis/{res}x{res}", f"synthesis.b{res}"
        convs = [("Conv", "conv1", _CONV)] if res == stylegan2.CONST_SIZE else [
            ("Conv0_up", "conv0", _CONV_UP), ("Conv1", "conv1", _CONV)]
        if res == stylegan2.CONST_SIZE:
            table[f"{tf}/Const/const"] = (f"{torch}.const", _CONST)
        for tf_name, torch_name, rule in convs:
            layer(f"{tf}/{tf_name}", f"{torch}.{torch_name}", rule)
            table[f"{tf}/{tf_name}/noise_strength"] = (f"{torch}.{torch_name}.noise_strength", _KEEP)
            index = 2 * int(math.log2(res)) - (4 if torch_name == "conv1" else 5)
            table[f"synthesis/noise{index}"] = (f"{torch}.{torch_name}.noise_const", _NOISE)
        layer(f"{tf}/ToRGB", f"{torch}.torgb", _CONV)
    return table


def collect_variables(network: dict, prefix: str = "", depth: int = 0) -> dict[str, np.ndarray]:
    """legacy.py's `_collect_tf_params`: own variables, then each component's under 'name/'."""
    if depth > 4:
        raise CheckpointError("TF network components are nested too deeply")
    state = network["state"]
    out: dict[str, np.ndarray] = {}
    items = state.get("variables")
    if not isinstance(items, list | tuple):
        raise CheckpointError(f"TF network {prefix or 'Gs'} has no variable list")
    for item in items:
        if not (isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], str)):
            raise CheckpointError(f"TF network {prefix or 'Gs'} has a malformed variable entry")
        if prefix + item[0] in out:
            raise CheckpointError(f"TF variable {prefix + item[0]!r} appears twice")
        out[prefix + item[0]] = np.asarray(item[1])
    components = state.get("components") or {}
    if not isinstance(components, Mapping):
        raise CheckpointError("TF network components are not a dict")
    for name, component in components.items():
        if not (isinstance(component, dict) and component.get("class") == STYLEGAN_CLASS):
            raise CheckpointError(f"TF component {str(name)[:40]!r} is not a Network")
        found = collect_variables(component, f"{prefix}{name}/", depth + 1)
        clash = sorted(set(found) & set(out))
        if clash:
            raise CheckpointError(f"TF variables appear twice: {clash[:4]}")
        out.update(found)
    return out


def _kwargs(network: dict) -> dict[str, Any]:
    kwargs = network["state"].get("static_kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise CheckpointError("the TF generator's static_kwargs are not a dict")
    unknown = sorted(str(k) for k in kwargs if k not in KWARGS)
    if unknown:
        raise CheckpointError(f"the TF generator has kwargs legacy.py does not know: {unknown}")
    out = {k: kwargs.get(k, default) for k, (default, _) in KWARGS.items()}
    for key, (_, allowed) in KWARGS.items():
        if allowed is not None and not any(_same(out[key], a) for a in allowed):
            raise CheckpointError(f"the TF generator uses {key}={out[key]!r}; supported: {list(allowed)}")
    kernel = out["resample_kernel"]
    if not isinstance(kernel, list | tuple) or list(kernel) != [1, 3, 3, 1]:
        raise CheckpointError(f"the TF generator uses resample_kernel={out['resample_kernel']!r}; only [1, 3, 3, 1]")
    return out


def _same(value: Any, wanted: Any) -> bool:
    """value == wanted for plain settings (a bool only equals a bool; arrays and other objects never match)."""
    if isinstance(value, bool) or isinstance(wanted, bool):
        return isinstance(value, bool) and isinstance(wanted, bool) and value == wanted
    return isinstance(value, str | int | float) and value == wanted


def convert_tf_network(network: dict, **settings: Any) -> tuple[str, stylegan2.Config, dict, dict]:
    """A `G_main` Network (as tf_pickle's reader returns it) -> (family, config, params, buffers)."""
    for name, func in BUILD_FUNCS.items():
        net = network if not name else network["state"]["components"].get(name)
        found = net["state"].get("build_func_name") if isinstance(net, dict) and "state" in net else None
        if found != func:
            raise CheckpointError(f"TF network {name or 'Gs'} is built by {found!r}, not StyleGAN2's {func}")
    kw = _kwargs(network)
    w_dim = int(kw["dlatent_size"])
    if kw["mapping_fmaps"] is not None and not _same(kw["mapping_fmaps"], w_dim):
        raise CheckpointError(f"the TF mapping network has {kw['mapping_fmaps']} features; only dlatent_size")
    try:
        config = stylegan2.Config(
            resolution=int(kw["resolution"]), z_dim=int(kw["latent_size"]), w_dim=w_dim,
            mapping_layers=int(kw["mapping_layers"]), mapping_lr_multiplier=float(kw["mapping_lrmul"]),
            channel_base=int(kw["fmap_base"]) * TF_TO_TORCH_CHANNEL_BASE, channel_max=int(kw["fmap_max"]),
            img_channels=int(kw["num_channels"]),
            conv_clamp=None if kw["conv_clamp"] is None else float(kw["conv_clamp"]), **settings)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"StyleGAN2 settings: {err}") from None
    tf_vars = collect_variables(network)
    for name in OPTIONAL_ZERO:
        if name in tf_vars and np.any(np.asarray(tf_vars.pop(name), np.float64) != 0):
            raise CheckpointError(f"TF variable {name} is not 0: a network still growing is not supported")
    names = name_table(config)
    torch_shapes = {e.source: e.shape for e in nvlabs_table(config)}
    what = f"TF StyleGAN2 {config.resolution}x{config.resolution} generator variables"
    check_state_dict(tf_vars, {tf: rule[1](torch_shapes[key]) for tf, (key, rule) in names.items()}, what=what)
    state = {key: rule[0](np.asarray(tf_vars[tf], np.float32)) for tf, (key, rule) in names.items()}
    params, buffers = convert_nvlabs_state_dict(state, config, filters={}, filter_value=RESAMPLE_FILTER_2D,
                                                what=what)
    return FAMILY, config, params, buffers


def convert_stylegan2_tf_pickle(path: str | os.PathLike, kind: str | None = None,
                                **settings: Any) -> tuple[str, stylegan2.Config, dict, dict]:
    """An official TF StyleGAN2 `.pkl` -> (family, config, params, buffers); nothing in it is executed."""
    if kind is not None and kind != FAMILY:
        raise CheckpointError(f"{path}: the pickle holds a TF StyleGAN2 generator, not {kind}")
    network = find_generator(load_network_pickle(path))
    try:
        return convert_tf_network(network, **settings)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    except (TypeError, ValueError, IndexError, KeyError, AttributeError) as err:  # a value of an unexpected kind
        raise CheckpointError(f"{path}: malformed TF network ({type(err).__name__}: {str(err)[:200]})") from None

"""StyleGAN3 generators (configs T and R) from NVlabs' stylegan3 pickles, read as data by `nvlabs_pickle`.

The Generator tree (`G_ema` of a snapshot, see `stylegan2_pickle.select_generator`) is rebuilt from the
recorded init kwargs of its `SynthesisNetwork` (NVlabs' defaults where one is not recorded): the layer design
(sampling rates, sizes, channels, up/down factors, filter lengths, paddings) is recomputed by
`ifgan_jax.models.stylegan3.Config.layer_specs` and checked against every layer's recorded attributes, so a
pickle whose source computed anything else is refused. Tensors go by a table (NVlabs' key -> destination,
shape checked, every key once); the FIR filters, Fourier frequencies and phases are buffers taken as stored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from converters.coverage import Entry, check_against_model, check_state_dict, fill_trees
from converters.coverage import linear as _linear
from converters.coverage import oihw_to_hwio as _conv
from converters.coverage import same as _same
from converters.nvlabs_pickle import Module
from converters.stylegan2_pickle import (
    MAPPING_LR_MULTIPLIER,
    agrees,
    check_settings,
    child_module,
    number,
    plain_value,
)
from ifgan_jax.errors import CheckpointError
from ifgan_jax.models import stylegan3

FAMILY = "stylegan3"
# SynthesisNetwork / SynthesisLayer kwargs, with NVlabs' defaults (None: recorded, not used by inference).
SYNTHESIS_DEFAULTS: dict[str, Any] = {
    "channel_base": 32768, "channel_max": 512, "num_layers": 14, "num_critical": 2, "first_cutoff": 2.0,
    "first_stopband": 2**2.1, "last_stopband_rel": 2**0.3, "margin_size": 10, "output_scale": 0.25,
    "conv_kernel": 3, "filter_size": 6, "lrelu_upsampling": 2, "use_radial_filters": False, "conv_clamp": 256,
}
SYNTHESIS_OTHER = ("w_dim", "img_resolution", "img_channels", "num_fp16_res", "magnitude_ema_beta")
MAPPING_KWARGS = ("z_dim", "c_dim", "w_dim", "num_ws", "num_layers", "lr_multiplier", "w_avg_beta")
INTS = ("channel_base", "channel_max", "num_layers", "num_critical", "margin_size", "conv_kernel", "filter_size",
        "lrelu_upsampling")


def is_stylegan3(G: Module) -> bool:
    synthesis = G.children.get("synthesis")
    return synthesis is not None and "input" in synthesis.children


def _config(G: Module, **settings: Any) -> stylegan3.Config:
    mapping = child_module(G, "mapping", "MappingNetwork", "mapping")
    synthesis = child_module(G, "synthesis", "SynthesisNetwork", "synthesis")
    c_dim = number(G.attrs.get("c_dim", 0), "c_dim")
    if c_dim:
        raise CheckpointError(f"the generator is class-conditional (c_dim={c_dim}); only unconditional "
                              f"generators are supported")
    check_settings(mapping.init_kwargs, dict.fromkeys(MAPPING_KWARGS), "the mapping network")
    kwargs = dict(synthesis.init_kwargs)
    check_settings(kwargs, dict.fromkeys((*SYNTHESIS_DEFAULTS, *SYNTHESIS_OTHER)), "the synthesis network")
    design = {}
    for key, default in SYNTHESIS_DEFAULTS.items():
        value = plain_value(kwargs.get(key, default))
        if key == "use_radial_filters":
            if not isinstance(value, bool):
                raise CheckpointError(f"use_radial_filters is {value!r}, not a bool")
            design[key] = value
        elif key == "conv_clamp":
            design[key] = None if value is None else number(value, key, float)
        else:
            design[key] = number(value, key, int if key in INTS else float)
    fc0 = mapping.children.get("fc0")
    lr = mapping.init_kwargs.get("lr_multiplier", fc0.attrs.get("bias_gain") if fc0 else MAPPING_LR_MULTIPLIER)
    try:
        return stylegan3.Config(
            resolution=number(G.attrs.get("img_resolution"), "img_resolution"),
            z_dim=number(G.attrs.get("z_dim"), "z_dim"), w_dim=number(G.attrs.get("w_dim"), "w_dim"),
            mapping_layers=number(mapping.attrs.get("num_layers"), "mapping num_layers"),
            mapping_lr_multiplier=number(lr, "mapping lr_multiplier", float),
            img_channels=number(G.attrs.get("img_channels"), "img_channels"), **design, **settings)
    except ValueError as err:
        raise CheckpointError(f"StyleGAN3 settings: {err}") from None


def layer_names(config: stylegan3.Config) -> list[str]:
    """NVlabs' layer names: L{idx}_{out_size}_{out_channels}."""
    return [f"L{i}_{s.out_size}_{s.out_channels}" for i, s in enumerate(config.layer_specs())]


def _check_layers(synthesis: Module, config: stylegan3.Config) -> None:
    """The recorded layer attributes must be what the config's design gives."""
    d = config.design()
    expected = {"input": {"channels": int(d["channels"][0]), "size": [int(d["sizes"][0])] * 2,
                          "sampling_rate": float(d["rates"][0]), "bandwidth": float(d["cutoffs"][0])}}
    for name, spec in zip(layer_names(config), config.layer_specs(), strict=True):
        expected[name] = {"in_channels": spec.in_channels, "out_channels": spec.out_channels,
                          "in_size": [spec.in_size] * 2, "out_size": [spec.out_size] * 2, "up_factor": spec.up,
                          "down_factor": spec.down, "up_taps": spec.up_taps, "down_taps": spec.down_taps,
                          "down_radial": spec.down_radial, "padding": list(spec.padding),
                          "conv_kernel": spec.kernel, "is_torgb": spec.is_torgb, "conv_clamp": config.conv_clamp}
    extra = sorted(set(synthesis.children) - set(expected))
    if extra:
        raise CheckpointError(f"the synthesis network has modules this design does not: {extra[:4]}")
    bad = []
    for name, attrs in expected.items():
        module = synthesis.children.get(name)
        if module is None:
            raise CheckpointError(f"the synthesis network lacks {name} (the design from its kwargs has it)")
        wanted_class = "SynthesisInput" if name == "input" else "SynthesisLayer"
        if module.class_name != wanted_class:
            raise CheckpointError(f"synthesis.{name} is a {module.class_name}, not {wanted_class}")
        for key, want in attrs.items():
            if key in module.attrs and not _matches(module.attrs[key], want):
                bad.append(f"{name}.{key}={str(plain_value(module.attrs[key]))[:24]} (expected {want!r})")
    if bad:
        raise CheckpointError(f"recorded layer attributes disagree with the StyleGAN3 design: {bad[:4]}")


def _matches(value: Any, want: Any) -> bool:
    if isinstance(want, list):
        got = plain_value(value)
        if not isinstance(got, list) or len(got) != len(want):
            return False
        return all(agrees(g, w) for g, w in zip(got, want, strict=True))
    return agrees(value, want)


def table(config: stylegan3.Config) -> list[Entry]:
    """Every tensor of NVlabs' StyleGAN3 Generator state dict and where it goes."""
    w = config.w_dim
    t = [Entry(f"mapping.fc{i}.{p}", ("params", "mapping", f"fc{i}", p), (w, w) if p == "weight" else (w,),
               _linear if p == "weight" else _same) for i in range(config.mapping_layers) for p in ("weight", "bias")]
    t.append(Entry("mapping.w_avg", ("buffers", "mapping", "w_avg"), (w,), _same))
    c0 = int(config.design()["channels"][0])
    t += [Entry("synthesis.input.weight", ("params", "synthesis", "input", "weight"), (c0, c0), _linear),
          Entry("synthesis.input.affine.weight", ("params", "synthesis", "input", "affine", "weight"), (4, w),
                _linear),
          Entry("synthesis.input.affine.bias", ("params", "synthesis", "input", "affine", "bias"), (4,), _same)]
    for buffer, shape in (("transform", (3, 3)), ("freqs", (c0, 2)), ("phases", (c0,))):
        t.append(Entry(f"synthesis.input.{buffer}", ("buffers", "synthesis", "input", buffer), shape, _same))
    for idx, (name, spec) in enumerate(zip(layer_names(config), config.layer_specs(), strict=True)):
        src, dst = f"synthesis.{name}", ("synthesis", f"L{idx}")
        k, cin, cout = spec.kernel, spec.in_channels, spec.out_channels
        t += [Entry(f"{src}.weight", ("params", *dst, "weight"), (cout, cin, k, k), _conv),
              Entry(f"{src}.bias", ("params", *dst, "bias"), (cout,), _same),
              Entry(f"{src}.affine.weight", ("params", *dst, "affine", "weight"), (cin, w), _linear),
              Entry(f"{src}.affine.bias", ("params", *dst, "affine", "bias"), (cin,), _same),
              Entry(f"{src}.magnitude_ema", ("buffers", *dst, "magnitude_ema"), (), _same)]
        if spec.up_taps > 1:
            t.append(Entry(f"{src}.up_filter", ("buffers", *dst, "up_filter"), (spec.up_taps,), _same))
        if spec.down_taps > 1:
            shape = (spec.down_taps,) * (2 if spec.down_radial else 1)
            t.append(Entry(f"{src}.down_filter", ("buffers", *dst, "down_filter"), shape, _same))
    return t


def convert_state(state: Mapping[str, Any], config: stylegan3.Config, what: str) -> tuple[dict, dict]:
    entries = table(config)
    check_state_dict(state, {e.source: e.shape for e in entries}, what=what)
    def positive_magnitudes(e: Entry, value: np.ndarray) -> None:
        if e.source.endswith("magnitude_ema") and not value > 0:
            raise CheckpointError(f"{what}: {e.source} is {value}, not positive")

    params, buffers = fill_trees(state, entries, what, positive_magnitudes)
    check_against_model(params, buffers, stylegan3.param_shapes(config), what)
    return params, buffers


def convert_generator_module(G: Module, **settings: Any) -> tuple[str, stylegan3.Config, dict, dict]:
    """A StyleGAN3 Generator tree -> (family, config, params, buffers)."""
    try:
        if G.class_name != "Generator":
            raise CheckpointError(f"G_ema is a {G.class_name}, not a Generator")
        config = _config(G, **settings)
        _check_layers(G.children["synthesis"], config)
        what = f"StyleGAN3 {config.resolution}x{config.resolution} generator"
        recorded = G.children["synthesis"].attrs.get("output_scale", config.output_scale)
        if not math.isclose(config.output_scale, number(recorded, "output_scale", float), rel_tol=1e-6):
            raise CheckpointError("the synthesis network records another output_scale than its kwargs")
        params, buffers = convert_state(G.flat_tensors(), config, what)
    except CheckpointError:
        raise
    except (TypeError, ValueError, IndexError, KeyError, AttributeError, OverflowError) as err:
        raise CheckpointError(f"malformed StyleGAN3 generator ({type(err).__name__}: {str(err)[:200]})") from None
    return FAMILY, config, params, buffers

"""InterFaceGAN's PGGAN / StyleGAN generator state dicts (`models/pretrain/*.pth`) -> params/buffers pytrees.

Each family has a table `(source key, destination path, expected source shape, transform)` built from
the inferred config; every source key is either mapped by the table exactly once or checked and dropped
(`truncation.truncation`, which InterFaceGAN rebuilds from psi/layers, and the fixed `blur.kernel`).
Missing, unexpected and mis-shaped keys are reported together in one CheckpointError.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from converters.coverage import Entry, check_against_model, check_state_dict, fill_trees
from converters.coverage import linear as _linear
from converters.coverage import oihw_to_hwio as _oihw_to_hwio
from converters.coverage import same as _same
from ifgan_jax.errors import CheckpointError
from ifgan_jax.models import pggan, stylegan

KINDS = ("pggan", "stylegan")


# -- transforms (torch layout -> ours) beyond coverage.py's ---------------------------------------------


def _first_conv(x: np.ndarray) -> np.ndarray:
    # A 4x4 conv with padding 3 on a 1x1 input: output pixel (i, j) uses tap (3 - i, 3 - j).
    return x.transpose(2, 3, 1, 0)[::-1, ::-1]


def _const(x: np.ndarray) -> np.ndarray:
    return x[0].transpose(1, 2, 0)  # (1, C, 4, 4) -> (4, 4, C)


def _noise(x: np.ndarray) -> np.ndarray:
    return x[0, 0]  # (1, 1, R, R) -> (R, R)


# -- inference ----------------------------------------------------------------------------------------


def _ensure_mapping(state_dict: Any) -> Mapping[str, Any]:
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"expected a state dict (mapping of arrays), got {type(state_dict).__name__}")
    return state_dict


def infer_kind(state_dict: Mapping[str, Any]) -> str:
    """'stylegan' (keys under mapping./synthesis.) or 'pggan' (layer0.conv.weight ...)."""
    keys = list(_ensure_mapping(state_dict))
    if any(k.startswith(("mapping.", "synthesis.", "truncation.")) for k in keys):
        return "stylegan"
    if any(re.fullmatch(r"(layer\d+\.(conv\.)?weight|layer\d+\.wscale\.bias|output\d+\..*)", k) for k in keys):
        return "pggan"
    sample = ", ".join(keys[:8])
    raise CheckpointError(f"not an InterFaceGAN PGGAN or StyleGAN state dict (keys: {sample or 'none'})")


def _max_index(keys: list[str], pattern: str) -> int:
    found = [int(m.group(1)) for k in keys if (m := re.match(pattern, k))]
    return max(found, default=-1)


def infer_resolution(state_dict: Mapping[str, Any], kind: str | None = None) -> int:
    """Output resolution from the highest `layer{i}` / `output{k}` index present."""
    keys = list(_ensure_mapping(state_dict))
    kind = kind or infer_kind(state_dict)
    label = "synthesis." if kind == "stylegan" else ""
    prefix = re.escape(label)
    max_layer = _max_index(keys, prefix + r"layer(\d+)\.")
    max_output = _max_index(keys, prefix + r"output(\d+)\.")
    if max_layer < 0 and max_output < 0:
        raise CheckpointError(f"{kind} state dict has no {label}layer{{i}} / {label}output{{k}} keys")
    blocks = max(max_layer // 2 + 1, max_output + 1)
    resolution = 2 ** (blocks + 1)
    if resolution not in pggan.RESOLUTIONS:
        raise CheckpointError(
            f"{kind} state dict has {blocks} resolution blocks (layer{max_layer}, output{max_output}), "
            f"i.e. {resolution}x{resolution}; supported resolutions are {pggan.RESOLUTIONS}"
        )
    return resolution


def _shape_of(state_dict: Mapping[str, Any], key: str, axis: int, default: int) -> int:
    shape = np.shape(state_dict[key]) if key in state_dict else ()
    return int(shape[axis]) if len(shape) > abs(axis) else default


# -- tables -------------------------------------------------------------------------------------------


def pggan_table(config: pggan.Config) -> list[Entry]:
    """Every key of InterFaceGAN's `PGGANGeneratorModel` state dict and where it goes."""
    table = [Entry("lod", ("buffers", "lod"), (), _same)]
    in_ch = config.latent_dim
    rgb = config.output_channels
    for block in range(1, config.num_blocks + 1):
        ch = config.block_channels(block)
        first, second = 2 * block - 2, 2 * block - 1
        if block == 1:
            table.append(Entry(f"layer{first}.conv.weight", ("params", f"layer{first}", "weight"),
                               (ch, in_ch, 4, 4), _first_conv))
        elif config.fused_scale:
            table.append(Entry(f"layer{first}.weight", ("params", f"layer{first}", "weight"),
                               (3, 3, in_ch, ch), _same))
        else:
            table.append(Entry(f"layer{first}.conv.weight", ("params", f"layer{first}", "weight"),
                               (ch, in_ch, 3, 3), _oihw_to_hwio))
        table += [
            Entry(f"layer{first}.wscale.bias", ("params", f"layer{first}", "bias"), (ch,), _same),
            Entry(f"layer{second}.conv.weight", ("params", f"layer{second}", "weight"), (ch, ch, 3, 3),
                  _oihw_to_hwio),
            Entry(f"layer{second}.wscale.bias", ("params", f"layer{second}", "bias"), (ch,), _same),
            Entry(f"output{block - 1}.conv.weight", ("params", f"output{block - 1}", "weight"),
                  (rgb, ch, 1, 1), _oihw_to_hwio),
            Entry(f"output{block - 1}.wscale.bias", ("params", f"output{block - 1}", "bias"), (rgb,), _same),
        ]
        in_ch = ch
    return table


def stylegan_table(config: stylegan.Config) -> list[Entry]:
    """Every kept key of InterFaceGAN's `StyleGANGeneratorModel` state dict and where it goes."""
    d = config.latent_dim
    table = []
    for i in range(stylegan.MAPPING_LAYERS):
        table += [
            Entry(f"mapping.dense{i}.linear.weight", ("params", "mapping", f"dense{i}", "weight"), (d, d),
                  _linear),
            Entry(f"mapping.dense{i}.wscale.bias", ("params", "mapping", f"dense{i}", "bias"), (d,), _same),
        ]
    table += [
        Entry("truncation.w_avg", ("buffers", "truncation", "w_avg"), (d,), _same),
        Entry("synthesis.lod", ("buffers", "synthesis", "lod"), (), _same),
    ]
    for layer in range(config.num_layers):
        src, dst = f"synthesis.layer{layer}", ("synthesis", f"layer{layer}")
        res, ch = config.layer_resolution(layer), config.layer_channels(layer)
        if layer == 0:
            table.append(Entry(f"{src}.first_layer", ("params", *dst, "const"), (1, ch, 4, 4), _const))
        else:
            in_ch = config.layer_channels(layer - 1)
            if layer % 2 == 0 and config.is_fused(layer):
                table.append(Entry(f"{src}.weight", ("params", *dst, "weight"), (3, 3, in_ch, ch), _same))
            else:
                table.append(Entry(f"{src}.conv.weight", ("params", *dst, "weight"), (ch, in_ch, 3, 3),
                                   _oihw_to_hwio))
        epi, epi_dst = f"{src}.epilogue", (*dst, "epilogue")
        table += [
            Entry(f"{epi}.bias", ("params", *epi_dst, "bias"), (ch,), _same),
            Entry(f"{epi}.apply_noise.weight", ("params", *epi_dst, "apply_noise", "weight"), (ch,), _same),
            Entry(f"{epi}.apply_noise.noise", ("buffers", *epi_dst, "apply_noise", "noise"), (1, 1, res, res),
                  _noise),
            Entry(f"{epi}.style_mod.dense.linear.weight", ("params", *epi_dst, "style_mod", "weight"),
                  (2 * ch, d), _linear),
            Entry(f"{epi}.style_mod.dense.wscale.bias", ("params", *epi_dst, "style_mod", "bias"), (2 * ch,),
                  _same),
        ]
    for k in range(config.num_blocks):
        ch = config.layer_channels(2 * k)
        table += [
            Entry(f"synthesis.output{k}.conv.weight", ("params", "synthesis", f"output{k}", "weight"),
                  (config.output_channels, ch, 1, 1), _oihw_to_hwio),
            Entry(f"synthesis.output{k}.bias", ("params", "synthesis", f"output{k}", "bias"),
                  (config.output_channels,), _same),
        ]
    return table


def stylegan_dropped_keys(config: stylegan.Config) -> dict[str, tuple[int, ...]]:
    """Keys InterFaceGAN saves that carry nothing to convert: checked (shape, blur values), not stored."""
    dropped = {"truncation.truncation": (1, config.num_layers, 1)}
    for layer in range(2, config.num_layers, 2):
        ch = config.layer_channels(layer)
        dropped[f"synthesis.layer{layer}.blur.kernel"] = (ch, 1, 3, 3)
    return dropped


# -- the conversion -----------------------------------------------------------------------------------


def _apply_table(state_dict: Mapping[str, Any], table: list[Entry], *, optional: Mapping[str, tuple],
                 what: str) -> tuple[dict, dict]:
    expected = {e.source: e.shape for e in table}
    if len(expected) != len(table):  # a table bug, not a file problem
        raise AssertionError(f"{what} table maps a key twice")
    check_state_dict(state_dict, {**expected, **optional}, optional=optional, what=what)
    return fill_trees(state_dict, table, what)


def _check_lod(value: Any, key: str) -> None:
    lod = float(np.asarray(value, dtype=np.float64).reshape(-1)[0]) if np.size(value) else 0.0
    if lod != 0.0:
        raise CheckpointError(
            f"{key} is {lod}: a network still growing (level of detail > 0); only fully grown models "
            f"(lod 0, as every released one) are supported"
        )


def convert_pggan(state_dict: Mapping[str, Any]) -> tuple[pggan.Config, dict, dict]:
    """InterFaceGAN PGGAN state dict -> (Config, params, buffers); every key and shape checked."""
    state_dict = _ensure_mapping(state_dict)
    keys = list(state_dict)
    fused = any(re.fullmatch(r"layer\d+\.weight", k) for k in keys)
    config = pggan.Config(
        resolution=infer_resolution(state_dict, "pggan"),
        latent_dim=_shape_of(state_dict, "layer0.conv.weight", 1, 512),
        fused_scale=fused,
        output_channels=_shape_of(state_dict, "output0.conv.weight", 0, 3),
    )
    what = f"PGGAN {config.resolution}x{config.resolution} state dict"
    params, buffers = _apply_table(state_dict, pggan_table(config), optional={}, what=what)
    _check_lod(state_dict["lod"], "lod")
    check_against_model(params, buffers, pggan.param_shapes(config), what)
    return config, params, buffers


def _infer_fused_scale(keys: list[str], resolution: int) -> str | bool:
    """'auto' when the fused layers (`layer{i}.weight`) are those at >= 128, else True / False."""
    fused = {int(m.group(1)) for k in keys if (m := re.fullmatch(r"synthesis\.layer(\d+)\.weight", k))}
    up_layers = set(range(2, stylegan.num_layers_for(resolution), 2))
    auto = {i for i in up_layers if 2 ** (i // 2 + 2) >= stylegan.AUTO_FUSED_MIN_RES}
    if fused == auto:
        return "auto"
    if fused == up_layers:
        return True
    if not fused:
        return False
    return "auto"  # a layout InterFaceGAN never writes: the table check lists the offending keys


def convert_stylegan(
    state_dict: Mapping[str, Any],
    *,
    truncation_psi: float = 0.7,
    truncation_layers: int = 8,
    noise_mode: str = "const",
) -> tuple[stylegan.Config, dict, dict]:
    """InterFaceGAN StyleGAN state dict -> (Config, params, buffers); every key and shape checked.

    `truncation.truncation` may be absent (InterFaceGAN's converter drops it); psi/layers come from the
    arguments (InterFaceGAN's defaults 0.7 and 8), as InterFaceGAN's loader also ignores the stored one.
    """
    state_dict = _ensure_mapping(state_dict)
    keys = list(state_dict)
    resolution = infer_resolution(state_dict, "stylegan")
    try:
        config = stylegan.Config(
            resolution=resolution,
            latent_dim=_shape_of(state_dict, "mapping.dense0.linear.weight", 1, 512),
            fused_scale=_infer_fused_scale(keys, resolution),
            output_channels=_shape_of(state_dict, "synthesis.output0.conv.weight", 0, 3),
            truncation_psi=float(truncation_psi),
            truncation_layers=int(truncation_layers),
            noise_mode=noise_mode,
        )
    except ValueError as err:
        raise CheckpointError(f"StyleGAN settings: {err}") from None
    what = f"StyleGAN {resolution}x{resolution} state dict"
    dropped = stylegan_dropped_keys(config)
    params, buffers = _apply_table(state_dict, stylegan_table(config), optional=dropped, what=what)
    _check_lod(state_dict["synthesis.lod"], "synthesis.lod")
    _check_blur_kernels(state_dict, dropped, what)
    check_against_model(params, buffers, stylegan.param_shapes(config), what)
    return config, params, buffers


def _check_blur_kernels(state_dict: Mapping[str, Any], dropped: Mapping[str, tuple], what: str) -> None:
    # The blur is fixed in the model; a file with another kernel would silently render differently.
    k1 = np.asarray(stylegan.BLUR_1D, np.float32)
    expected = np.outer(k1, k1)
    bad = [k for k in dropped if k.endswith("blur.kernel") and k in state_dict
           and not np.allclose(np.asarray(state_dict[k], np.float32), expected, rtol=0, atol=1e-6)]
    if bad:
        raise CheckpointError(f"{what}: blur kernels differ from [1,2,1]x[1,2,1]/16 in {bad}")


def convert_state_dict(state_dict: Mapping[str, Any], kind: str | None = None) -> tuple[str, Any, dict, dict]:
    """Convert either family: (family, config, params, buffers)."""
    inferred = infer_kind(state_dict)
    if kind is not None and kind != inferred:
        raise CheckpointError(f"the weights are a {inferred} generator, not {kind}")
    if inferred == "pggan":
        return ("pggan", *convert_pggan(state_dict))
    return ("stylegan", *convert_stylegan(state_dict))

"""NVIDIA's original network pickles (PGGAN, StyleGAN) read without TensorFlow, Theano or their code.

Three layouts of the generator (`Gs`, the third of the pickled `(G, D, Gs)`) are understood:

* PGGAN, TensorFlow release (`tfutil.Network`): state `{version, name, static_kwargs, build_module_src,
  build_func_name: 'G_paper', variables: [(name, array), ...]}`.
* PGGAN, Theano era (`network.Network`): state `{build_func_spec: {func, resolution, ...},
  param_values: [weight, wscale, bias, ...], toplevel_params: {cur_lod}}`, turned into TensorFlow
  variables the way the TF release's `legacy.patch_theano_gan` does.
* StyleGAN (`dnnlib.tflib.network.Network`): as the TF PGGAN, plus `components` `mapping` and
  `synthesis`, each a Network with its own variables.

The unpickler resolves only an allow-list of globals: the Network classes become inert stubs that keep
their pickled state as a plain dict, numpy arrays are rebuilt by numpy's own reconstructors, and nothing
else can be named. The embedded network source (`build_module_src`) is kept as a string and never run.
TensorFlow variable names are then mapped to InterFaceGAN's state-dict names with InterFaceGAN's
converter rules (`models/*_generator.py: convert_tf_model`) and converted by `converters.interfacegan`.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from converters import interfacegan
from converters.coverage import check_state_dict
from converters.pickle_globals import codecs_encode, numpy_globals
from ifgan_jax.errors import CheckpointError
from ifgan_jax.models import pggan, stylegan

PGGAN_CLASSES = ("tfutil.Network", "network.Network")  # TF release, Theano era
STYLEGAN_CLASS = "dnnlib.tflib.network.Network"
THEANO_GENERATORS = ("G_paper", "G_progressive_8")  # legacy.theano_gan_remap, generator half
RELU_GAIN = math.sqrt(2.0)
LINEAR_GAIN = 1.0

# Settings InterFaceGAN's PyTorch models hard-code; a pickle built otherwise would convert to wrong images.
PGGAN_FIXED_KWARGS = {
    "label_size": 0, "normalize_latents": True, "use_wscale": True, "use_pixelnorm": True,
    "pixelnorm_epsilon": 1e-8, "use_leakyrelu": True,
}
MAPPING_FIXED_KWARGS = {
    "label_size": 0, "mapping_layers": stylegan.MAPPING_LAYERS, "mapping_lrmul": stylegan.MAPPING_LR_MULTIPLIER,
    "mapping_nonlinearity": "lrelu", "use_wscale": True, "normalize_latents": True,
}
SYNTHESIS_FIXED_KWARGS = {
    "use_styles": True, "const_input_layer": True, "use_noise": True, "nonlinearity": "lrelu",
    "use_wscale": True, "use_pixel_norm": False, "use_instance_norm": True, "blur_filter": [1, 2, 1],
}


# -- restricted unpickling ----------------------------------------------------------------------------


class _NetworkStub:
    """Stands in for a pickled Network class: records the state dict instead of building a graph."""

    class_name = ""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise CheckpointError(f"{self.class_name} state is a {type(state).__name__}, not a dict")
        self.__dict__["state"] = state

    def __setattr__(self, name: str, value: Any) -> None:
        raise CheckpointError(f"pickle tries to set attribute {name!r} on a {self.class_name}")


def _stub(name: str) -> type:
    return type("Network", (_NetworkStub,), {"class_name": name, "__slots__": ()})


_STUBS = {name: _stub(name) for name in (*PGGAN_CLASSES, STYLEGAN_CLASS)}


class _EasyDict(dict):
    """dnnlib.util.EasyDict: a dict subclass; kept as a dict."""


def _safe_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    # copyreg._reconstructor as Python 2 pickles use it for new-style objects, limited to the stubs.
    if cls not in _STUBS.values() or base is not object or state is not None:
        raise CheckpointError("pickle uses copyreg._reconstructor on something other than a Network")
    return object.__new__(cls)


_ALLOWED: dict[tuple[str, str], Any] = {
    **{tuple(name.rsplit(".", 1)): stub for name, stub in _STUBS.items()},
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("collections", "OrderedDict"): OrderedDict,
    ("copy_reg", "_reconstructor"): _safe_reconstructor,
    ("copyreg", "_reconstructor"): _safe_reconstructor,
    ("__builtin__", "object"): object,
    ("builtins", "object"): object,
    ("_codecs", "encode"): codecs_encode,
    **numpy_globals(),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise CheckpointError(f"pickle refers to {module}.{name}, which a network pickle may not use") from None

    def persistent_load(self, pid: Any) -> Any:
        raise CheckpointError("pickle uses persistent ids, which network pickles never contain")


def _plain(obj: Any, depth: int = 0) -> Any:
    """Stubs -> {'class': name, 'state': {...}}, EasyDict/OrderedDict -> dict; arrays kept."""
    if depth > 64:
        raise CheckpointError("pickle is nested too deeply")
    if isinstance(obj, _NetworkStub):
        state = obj.__dict__.get("state")
        if state is None:
            raise CheckpointError(f"{obj.class_name} object without a state")
        return {"class": obj.class_name, "state": _plain(state, depth + 1)}
    if isinstance(obj, dict):
        return {k: _plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_plain(v, depth + 1) for v in obj)
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject:
        raise CheckpointError("pickle holds an object array, which network weights never are")
    return obj


def load_network_pickle(path: str | os.PathLike) -> Any:
    """Unpickle `path` with the allow-list; Networks come back as {'class', 'state'} dicts."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        # latin1: the Theano-era pickles are Python 2 ones whose numpy buffers are byte strings.
        obj = _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
        return _plain(obj)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    except RecursionError:
        raise CheckpointError(f"{path}: pickle is nested too deeply") from None
    except Exception as err:  # a damaged pickle raises many types
        raise CheckpointError(f"{path}: not a readable network pickle ({type(err).__name__}: {err})") from None


def find_generator(obj: Any) -> dict:
    """The generator to convert: `Gs` of a pickled (G, D, Gs), or a single pickled Network."""
    if isinstance(obj, tuple | list) and len(obj) == 3 and all(_is_network(x) for x in obj):
        return obj[2]
    if _is_network(obj):
        return obj
    raise CheckpointError(f"expected a pickled (G, D, Gs) tuple of Networks, got {_describe(obj)}")


def _is_network(obj: Any) -> bool:
    return isinstance(obj, dict) and set(obj) == {"class", "state"}


def _describe(obj: Any) -> str:
    if _is_network(obj):
        return obj["class"]
    if isinstance(obj, tuple | list):
        return f"a {type(obj).__name__} of {len(obj)} ({', '.join(_describe(x) for x in obj[:4])})"
    return type(obj).__name__


# -- variables ----------------------------------------------------------------------------------------


def _variables(network: dict, what: str) -> dict[str, np.ndarray]:
    items = network["state"].get("variables")
    if not isinstance(items, list | tuple):
        raise CheckpointError(f"{what} has no variable list")
    out: dict[str, np.ndarray] = {}
    for item in items:
        if not (isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], str)):
            raise CheckpointError(f"{what} has a malformed variable entry")
        name, value = item
        if name in out:
            raise CheckpointError(f"{what} has two variables named {name!r}")
        out[name] = np.asarray(value)
    return out


def _check_kwargs(kwargs: Any, fixed: Mapping[str, Any], what: str) -> None:
    if not isinstance(kwargs, dict):
        return
    bad = [f"{k}={kwargs[k]!r} (need {v!r})" for k, v in fixed.items()
           if k in kwargs and not _same_setting(kwargs[k], v)]
    if bad:
        raise CheckpointError(f"{what} was built with settings InterFaceGAN's model does not support: "
                              + ", ".join(bad))


def _same_setting(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, float):
        return isinstance(value, int | float) and math.isclose(float(value), wanted, rel_tol=1e-6)
    if isinstance(wanted, list):
        return isinstance(value, list | tuple) and list(value) == wanted
    # True == 1 in Python; a flag must be a real bool and a count a real number.
    return isinstance(value, bool) == isinstance(wanted, bool) and value == wanted


def theano_to_tf_variables(state: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A Theano-era PGGAN generator state -> TF variables, following the TF release's patch_theano_gan.

    Theano stored (weight, wscale, bias) per layer with the runtime scale folded differently: the TF
    weight is `weight * wscale / he_std`, with convolution kernels flipped (Theano convolves).
    """
    spec = dict(state.get("build_func_spec") or {})
    func = spec.pop("func", None)
    if func not in THEANO_GENERATORS:
        raise CheckpointError(f"Theano network {func!r} is not a PGGAN generator ({', '.join(THEANO_GENERATORS)})")
    resolution = int(spec.get("resolution", 32))
    if resolution not in pggan.RESOLUTIONS:
        raise CheckpointError(f"Theano generator resolution {resolution} is not one of {pggan.RESOLUTIONS}")
    unsupported = {"label_size": 0, "use_batchnorm": False, "tanh_at_end": None, "use_layernorm": False,
                   "use_wscale": True}
    bad = [f"{k}={spec[k]!r}" for k, v in unsupported.items() if k in spec and spec[k] != v]
    if bad:
        raise CheckpointError(f"Theano generator uses features InterFaceGAN's PGGAN lacks: {', '.join(bad)}")
    res_log2 = int(math.log2(resolution))
    layers = 2 + 2 * (res_log2 - 2) + (res_log2 - 1)  # 4x4 Dense + Conv, two convs per block, ToRGBs
    values = list(state.get("param_values") or [])
    if len(values) != 3 * layers:
        raise CheckpointError(f"Theano {resolution}x{resolution} generator should have {3 * layers} parameter "
                              f"arrays (weight, wscale, bias per layer), has {len(values)}")
    values = [np.asarray(v, dtype=np.float32) for v in values]

    def he_std(gain: float, w: np.ndarray) -> float:
        return gain / math.sqrt(float(np.prod(w.shape[:-1])))

    tf_vars: dict[str, np.ndarray] = {}
    order = iter(range(layers))

    def layer(name: str, gain: float, reshape: Callable[[np.ndarray], np.ndarray]) -> None:
        i = next(order)
        w = reshape(values[3 * i])
        tf_vars[f"{name}/weight"] = w * values[3 * i + 1] / he_std(gain, w)
        tf_vars[f"{name}/bias"] = values[3 * i + 2]

    def conv(w: np.ndarray) -> np.ndarray:
        return w.transpose(2, 3, 1, 0)[::-1, ::-1]

    layer("4x4/Dense", RELU_GAIN / 4, lambda w: w.transpose(1, 0, 2, 3).reshape(w.shape[1], -1))
    layer("4x4/Conv", RELU_GAIN, conv)
    for res in range(3, res_log2 + 1):
        layer(f"{2**res}x{2**res}/Conv0", RELU_GAIN, conv)
        layer(f"{2**res}x{2**res}/Conv1", RELU_GAIN, conv)
    for lod in range(res_log2 - 1):
        layer(f"ToRGB_lod{lod}", LINEAR_GAIN, lambda w: w[np.newaxis, np.newaxis])
    lod_value = (state.get("toplevel_params") or {}).get("cur_lod", 0.0)
    tf_vars["lod"] = np.asarray(lod_value, dtype=np.float32)
    return tf_vars


# -- TF names -> InterFaceGAN names -------------------------------------------------------------------

# Each rule: TF layout -> InterFaceGAN (torch) layout, and the TF shape that a given torch shape implies.
_Rule = tuple[Callable[[np.ndarray], np.ndarray], Callable[[tuple], tuple]]
_KEEP: _Rule = (lambda x: x, lambda s: s)
_CONV: _Rule = (lambda x: x.transpose(3, 2, 0, 1), lambda s: (s[2], s[3], s[1], s[0]))  # HWIO -> OIHW
_DENSE: _Rule = (lambda x: x.T, lambda s: (s[1], s[0]))  # (in, out) -> (out, in)
_PGGAN_UP: _Rule = (lambda x: x.transpose(0, 1, 3, 2), lambda s: (s[0], s[1], s[3], s[2]))  # (k,k,out,in)
# PGGAN's first layer is a dense layer to (C, 4, 4); InterFaceGAN runs it as a 4x4 conv with padding 3.
_PGGAN_DENSE: _Rule = (
    lambda x: x.reshape(x.shape[0], -1, 4, 4).transpose(1, 0, 2, 3)[:, :, ::-1, ::-1],
    lambda s: (s[1], s[0] * 16),
)


def _to_rgb_lod(resolution: int, output: int) -> int:
    """InterFaceGAN's `output{k}` is TF's `ToRGB_lod{log2(R) - 2 - k}`."""
    return int(math.log2(resolution)) - 2 - output


def pggan_name_table(resolution: int, fused: bool) -> dict[str, tuple[str, _Rule]]:
    """TF variable name -> (InterFaceGAN key, rule), as InterFaceGAN's `_PGGAN_PTH_VARS_TO_TF_VARS`."""
    table: dict[str, tuple[str, _Rule]] = {
        "lod": ("lod", _KEEP),
        "4x4/Dense/weight": ("layer0.conv.weight", _PGGAN_DENSE),
        "4x4/Dense/bias": ("layer0.wscale.bias", _KEEP),
        "4x4/Conv/weight": ("layer1.conv.weight", _CONV),
        "4x4/Conv/bias": ("layer1.wscale.bias", _KEEP),
    }
    for block in range(2, int(math.log2(resolution))):
        res = 2 ** (block + 1)
        first, second = 2 * block - 2, 2 * block - 1
        if fused:
            table[f"{res}x{res}/Conv0_up/weight"] = (f"layer{first}.weight", _PGGAN_UP)
            table[f"{res}x{res}/Conv0_up/bias"] = (f"layer{first}.wscale.bias", _KEEP)
        else:
            table[f"{res}x{res}/Conv0/weight"] = (f"layer{first}.conv.weight", _CONV)
            table[f"{res}x{res}/Conv0/bias"] = (f"layer{first}.wscale.bias", _KEEP)
        table[f"{res}x{res}/Conv1/weight"] = (f"layer{second}.conv.weight", _CONV)
        table[f"{res}x{res}/Conv1/bias"] = (f"layer{second}.wscale.bias", _KEEP)
    for k in range(int(math.log2(resolution)) - 1):
        lod = _to_rgb_lod(resolution, k)
        table[f"ToRGB_lod{lod}/weight"] = (f"output{k}.conv.weight", _CONV)
        table[f"ToRGB_lod{lod}/bias"] = (f"output{k}.wscale.bias", _KEEP)
    return table


def stylegan_name_table(config: stylegan.Config) -> dict[str, tuple[str, _Rule]]:
    """TF variable name -> (InterFaceGAN key, rule), as InterFaceGAN's `_STYLEGAN_PTH_VARS_TO_TF_VARS`."""
    table: dict[str, tuple[str, _Rule]] = {
        "dlatent_avg": ("truncation.w_avg", _KEEP),
        "lod": ("synthesis.lod", _KEEP),
    }
    for i in range(stylegan.MAPPING_LAYERS):
        table[f"Dense{i}/weight"] = (f"mapping.dense{i}.linear.weight", _DENSE)
        table[f"Dense{i}/bias"] = (f"mapping.dense{i}.wscale.bias", _KEEP)
    for layer in range(config.num_layers):
        res = config.layer_resolution(layer)
        src = f"synthesis.layer{layer}"
        table[f"noise{layer}"] = (f"{src}.epilogue.apply_noise.noise", _KEEP)
        if layer == 0:
            scope = "4x4/Const"
            table[f"{scope}/const"] = (f"{src}.first_layer", _KEEP)
        elif layer == 1:
            scope = "4x4/Conv"
            table[f"{scope}/weight"] = (f"{src}.conv.weight", _CONV)
        elif layer % 2 == 0:
            scope = f"{res}x{res}/Conv0_up"
            fused = config.is_fused(layer)  # fused kernels keep TF's (k, k, in, out) layout
            table[f"{scope}/weight"] = (f"{src}.weight", _KEEP) if fused else (f"{src}.conv.weight", _CONV)
        else:
            scope = f"{res}x{res}/Conv1"
            table[f"{scope}/weight"] = (f"{src}.conv.weight", _CONV)
        table[f"{scope}/Noise/weight"] = (f"{src}.epilogue.apply_noise.weight", _KEEP)
        table[f"{scope}/bias"] = (f"{src}.epilogue.bias", _KEEP)
        table[f"{scope}/StyleMod/weight"] = (f"{src}.epilogue.style_mod.dense.linear.weight", _DENSE)
        table[f"{scope}/StyleMod/bias"] = (f"{src}.epilogue.style_mod.dense.wscale.bias", _KEEP)
    for k in range(config.num_blocks):
        lod = _to_rgb_lod(config.resolution, k)
        table[f"ToRGB_lod{lod}/weight"] = (f"synthesis.output{k}.conv.weight", _CONV)
        table[f"ToRGB_lod{lod}/bias"] = (f"synthesis.output{k}.bias", _KEEP)
    return table


def _rename(tf_vars: Mapping[str, np.ndarray], names: Mapping[str, tuple[str, _Rule]],
            torch_shapes: Mapping[str, tuple], what: str) -> dict[str, np.ndarray]:
    """Check the TF variables against the table (one error for all problems), then rename/relayout."""
    expected = {tf: rule[1](torch_shapes[key]) for tf, (key, rule) in names.items()}
    check_state_dict(tf_vars, expected, what=what)
    return {key: rule[0](np.asarray(tf_vars[tf])) for tf, (key, rule) in names.items()}


def _resolution_from_names(names: list[str], what: str) -> int:
    sizes = [int(m.group(1)) for n in names if (m := re.match(r"(\d+)x\1/", n))]
    if not sizes or max(sizes) not in pggan.RESOLUTIONS:
        raise CheckpointError(f"{what}: cannot tell the resolution from its variables "
                              f"(largest block {max(sizes, default=None)}; supported {pggan.RESOLUTIONS})")
    return max(sizes)


def pggan_state_dict(network: dict) -> dict[str, np.ndarray]:
    """A PGGAN generator Network (TF or Theano) -> InterFaceGAN PGGAN state dict."""
    state = network["state"]
    if "version" not in state:  # the Theano layout (what legacy.patch_theano_gan recognises)
        tf_vars = theano_to_tf_variables(state)
    else:
        if state.get("build_func_name") != "G_paper":
            raise CheckpointError(f"network {state.get('build_func_name')!r} is not PGGAN's generator G_paper")
        _check_kwargs(state.get("static_kwargs"), PGGAN_FIXED_KWARGS, "PGGAN generator")
        tf_vars = _variables(network, "PGGAN generator")
    what = "PGGAN generator variables"
    resolution = _resolution_from_names(list(tf_vars), what)
    fused = any("/Conv0_up/" in n for n in tf_vars)
    config = pggan.Config(resolution=resolution, latent_dim=_latent_dim(tf_vars, "4x4/Dense/weight", 0),
                          fused_scale=fused, output_channels=_rgb_channels(tf_vars))
    shapes = {e.source: e.shape for e in interfacegan.pggan_table(config)}
    return _rename(tf_vars, pggan_name_table(resolution, fused), shapes, what)


def stylegan_state_dict(network: dict) -> dict[str, np.ndarray]:
    """A StyleGAN `G_style` Network with mapping/synthesis components -> InterFaceGAN StyleGAN state dict."""
    state = network["state"]
    if state.get("build_func_name") != "G_style":
        raise CheckpointError(f"network {state.get('build_func_name')!r} is not StyleGAN's generator G_style")
    components = state.get("components") or {}
    missing = [c for c in ("mapping", "synthesis") if not _is_network(components.get(c))]
    if missing:
        raise CheckpointError(f"StyleGAN generator lacks its {' and '.join(missing)} component")
    mapping, synthesis = components["mapping"], components["synthesis"]
    _check_kwargs(mapping["state"].get("static_kwargs"), MAPPING_FIXED_KWARGS, "StyleGAN mapping network")
    synthesis_kwargs = synthesis["state"].get("static_kwargs") or {}
    _check_kwargs(synthesis_kwargs, SYNTHESIS_FIXED_KWARGS, "StyleGAN synthesis network")

    top = _variables(network, "StyleGAN generator")
    # G_style copies its own `lod` into the synthesis network's before every run, so the top one rules;
    # both are 0 in released models and the converter refuses anything else.
    top_lod = top.pop("lod", None)
    tf_vars = {**top, **_variables(mapping, "StyleGAN mapping network")}
    synthesis_vars = _variables(synthesis, "StyleGAN synthesis network")
    clash = sorted(set(tf_vars) & set(synthesis_vars))
    if clash:
        raise CheckpointError(f"StyleGAN variables appear in two networks: {clash}")
    tf_vars.update(synthesis_vars)
    if top_lod is not None:
        tf_vars["lod"] = top_lod
    what = "StyleGAN generator variables"
    resolution = _resolution_from_names(list(tf_vars), what)
    fused_scale = synthesis_kwargs.get("fused_scale", "auto")
    try:
        config = stylegan.Config(resolution=resolution, latent_dim=_latent_dim(tf_vars, "Dense0/weight", 0),
                                 fused_scale=fused_scale, output_channels=_rgb_channels(tf_vars))
    except ValueError as err:
        raise CheckpointError(f"StyleGAN synthesis settings: {err}") from None
    shapes = {e.source: e.shape for e in interfacegan.stylegan_table(config)}
    return _rename(tf_vars, stylegan_name_table(config), shapes, what)


def _latent_dim(tf_vars: Mapping[str, np.ndarray], name: str, axis: int) -> int:
    shape = np.shape(tf_vars.get(name, np.zeros((512,))))
    return int(shape[axis]) if shape else 512


def _rgb_channels(tf_vars: Mapping[str, np.ndarray]) -> int:
    shape = np.shape(tf_vars.get("ToRGB_lod0/weight", np.zeros((1, 1, 1, 3))))
    return int(shape[-1]) if len(shape) == 4 else 3


def pickle_to_state_dict(path: str | os.PathLike, kind: str | None = None) -> tuple[str, dict[str, np.ndarray]]:
    """Read an NVIDIA pickle and return (kind, InterFaceGAN-named state dict) of its generator."""
    generator = find_generator(load_network_pickle(path))
    found = "stylegan" if generator["class"] == STYLEGAN_CLASS else "pggan"
    if kind is not None and kind != found:
        raise CheckpointError(f"{path}: the pickle holds a {found} generator ({generator['class']}), not {kind}")
    try:
        state_dict = stylegan_state_dict(generator) if found == "stylegan" else pggan_state_dict(generator)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    return found, state_dict


def convert_tf_pickle(path: str | os.PathLike, kind: str | None = None) -> tuple[str, Any, dict, dict]:
    """NVIDIA's `.pkl` -> (family, config, params, buffers), via InterFaceGAN's names and converter."""
    family, state_dict = pickle_to_state_dict(path, kind)
    try:
        return interfacegan.convert_state_dict(state_dict, family)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None

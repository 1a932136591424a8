"""NVIDIA's original pickles (TF PGGAN, Theano-era PGGAN, StyleGAN) read without TensorFlow.

The pickles are built here: stand-in classes registered under NVIDIA's module names pickle the same
state layout the real `Network` classes write. Their variables are the parity weights in TensorFlow
layout (the inverse of InterFaceGAN's `convert_tf_model` rules), so a correct reader must reproduce
the direct `.pth` conversion exactly.
"""

from __future__ import annotations

import json
import math
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from helpers.parity import spec_state_dict

from converters.interfacegan import convert_state_dict
from converters.tf_pickle import convert_tf_pickle, load_network_pickle, pickle_to_state_dict
from ifgan_jax.cli import main
from ifgan_jax.errors import CheckpointError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PARITY_TOL = 1e-4  # relative error over the whole image, as in test_pggan.py


def load_spec(name: str) -> tuple[dict, dict]:
    spec = json.loads((FIXTURES / f"{name}_spec.json").read_text())
    return spec, spec_state_dict(spec)


# -- InterFaceGAN state dicts -> TF variables (inverse of InterFaceGAN's convert_tf_model) ------------


def torch_conv_to_tf(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))  # (out, in, kh, kw) -> (kh, kw, in, out)


def pggan_tf_variables(state: dict) -> dict[str, np.ndarray]:
    res_log2 = max(int(k[len("output"):].split(".")[0]) for k in state if k.startswith("output")) + 2
    out = {"lod": state["lod"]}
    w0 = state["layer0.conv.weight"]  # (C, latent, 4, 4), spatially flipped relative to TF's dense
    out["4x4/Dense/weight"] = np.ascontiguousarray(w0[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).reshape(w0.shape[1], -1))
    out["4x4/Dense/bias"] = state["layer0.wscale.bias"]
    out["4x4/Conv/weight"] = torch_conv_to_tf(state["layer1.conv.weight"])
    out["4x4/Conv/bias"] = state["layer1.wscale.bias"]
    for res_l in range(3, res_log2 + 1):
        first, second, r = 2 * res_l - 4, 2 * res_l - 3, 2**res_l
        out[f"{r}x{r}/Conv0/weight"] = torch_conv_to_tf(state[f"layer{first}.conv.weight"])
        out[f"{r}x{r}/Conv0/bias"] = state[f"layer{first}.wscale.bias"]
        out[f"{r}x{r}/Conv1/weight"] = torch_conv_to_tf(state[f"layer{second}.conv.weight"])
        out[f"{r}x{r}/Conv1/bias"] = state[f"layer{second}.wscale.bias"]
    for k in range(res_log2 - 1):
        lod = res_log2 - 2 - k
        out[f"ToRGB_lod{lod}/weight"] = torch_conv_to_tf(state[f"output{k}.conv.weight"])
        out[f"ToRGB_lod{lod}/bias"] = state[f"output{k}.wscale.bias"]
    return out


def theano_param_values(tf_vars: dict, res_log2: int, wscale: float = 0.5) -> list[np.ndarray]:
    """TF variables -> the Theano list [weight, wscale, bias, ...] that legacy.patch_theano_gan reads."""
    def he_std(gain: float, w: np.ndarray) -> float:
        return gain / math.sqrt(np.prod(w.shape[:-1]))

    values = []

    def layer(name: str, gain: float, to_theano) -> None:
        w = tf_vars[f"{name}/weight"]
        values.extend([to_theano(w * he_std(gain, w) / wscale), np.float32(wscale), tf_vars[f"{name}/bias"]])

    def conv(w):
        return np.ascontiguousarray(w[::-1, ::-1].transpose(3, 2, 0, 1))

    layer("4x4/Dense", math.sqrt(2) / 4, lambda w: w.reshape(w.shape[0], -1, 4, 4).transpose(1, 0, 2, 3))
    layer("4x4/Conv", math.sqrt(2), conv)
    for res_l in range(3, res_log2 + 1):
        layer(f"{2**res_l}x{2**res_l}/Conv0", math.sqrt(2), conv)
        layer(f"{2**res_l}x{2**res_l}/Conv1", math.sqrt(2), conv)
    for lod in range(res_log2 - 1):
        layer(f"ToRGB_lod{lod}", 1.0, lambda w: w[0, 0])
    return [np.asarray(v, np.float32) for v in values]


def stylegan_tf_variables(state: dict) -> tuple[dict, dict, dict]:
    """(Gs own, mapping, synthesis) TF variables of an InterFaceGAN StyleGAN state dict."""
    top = {"dlatent_avg": state["truncation.w_avg"], "lod": state["synthesis.lod"]}
    mapping = {}
    for i in range(8):
        mapping[f"Dense{i}/weight"] = np.ascontiguousarray(state[f"mapping.dense{i}.linear.weight"].T)
        mapping[f"Dense{i}/bias"] = state[f"mapping.dense{i}.wscale.bias"]
    synthesis = {"lod": state["synthesis.lod"]}
    layers = 1 + max(int(k.split(".")[1][5:]) for k in state if k.startswith("synthesis.layer"))
    for layer in range(layers):
        src, r = f"synthesis.layer{layer}", 2 ** (layer // 2 + 2)
        synthesis[f"noise{layer}"] = state[f"{src}.epilogue.apply_noise.noise"]
        if layer == 0:
            scope = "4x4/Const"
            synthesis[f"{scope}/const"] = state[f"{src}.first_layer"]
        else:
            scope = "4x4/Conv" if layer == 1 else f"{r}x{r}/Conv0_up" if layer % 2 == 0 else f"{r}x{r}/Conv1"
            fused = f"{src}.weight" in state
            weight = state[f"{src}.weight"] if fused else torch_conv_to_tf(state[f"{src}.conv.weight"])
            synthesis[f"{scope}/weight"] = weight
        synthesis[f"{scope}/Noise/weight"] = state[f"{src}.epilogue.apply_noise.weight"]
        synthesis[f"{scope}/bias"] = state[f"{src}.epilogue.bias"]
        synthesis[f"{scope}/StyleMod/weight"] = np.ascontiguousarray(
            state[f"{src}.epilogue.style_mod.dense.linear.weight"].T)
        synthesis[f"{scope}/StyleMod/bias"] = state[f"{src}.epilogue.style_mod.dense.wscale.bias"]
    for k in range(layers // 2):
        lod = layers // 2 - 1 - k
        synthesis[f"ToRGB_lod{lod}/weight"] = torch_conv_to_tf(state[f"synthesis.output{k}.conv.weight"])
        synthesis[f"ToRGB_lod{lod}/bias"] = state[f"synthesis.output{k}.bias"]
    return top, mapping, synthesis


# -- pickles with NVIDIA's class names ----------------------------------------------------------------


@pytest.fixture
def nvidia_classes(monkeypatch):
    """Stand-in `Network` classes importable under NVIDIA's module paths while the test runs."""
    classes = {}
    for dotted in ("tfutil", "network", "dnnlib.tflib.network", "dnnlib.util"):
        parts = dotted.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name not in sys.modules or i == len(parts):
                monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
        module = sys.modules[dotted]
        if dotted == "dnnlib.util":
            cls = type("EasyDict", (dict,), {"__module__": dotted})
        else:
            cls = type("Network", (), {
                "__module__": dotted,
                "__init__": lambda self, state: self.__dict__.update(_state=state),
                "__getstate__": lambda self: self._state,
            })
        module.__dict__[cls.__name__] = cls
        classes[dotted] = cls
    return classes


def tf_network(cls, name: str, func: str, variables: dict, **extra) -> object:
    state = {"version": 3, "name": name, "static_kwargs": extra.pop("static_kwargs", {}),
             "build_module_src": "raise RuntimeError('network source must never run')",
             "build_func_name": func, "variables": list(variables.items()), **extra}
    return cls(state)


def write(path: Path, obj, protocol: int = 4) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def assert_same_trees(a, b, exact: bool = True) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], dict):
            assert_same_trees(a[key], b[key], exact)
        elif exact:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        else:
            np.testing.assert_allclose(a[key], b[key], rtol=2e-6, atol=1e-7, err_msg=key)


@pytest.fixture(scope="module")
def pggan32():
    return load_spec("pggan_32_seed7")[1]


def pggan_tf_pickle(path: Path, classes, state: dict) -> Path:
    cls = classes["tfutil"]
    kwargs = {"resolution": 32, "num_channels": 3, "fused_scale": False, "use_wscale": True}
    gs = tf_network(cls, "Gs", "G_paper", pggan_tf_variables(state), static_kwargs=kwargs)
    d = tf_network(cls, "D", "D_paper", {})
    return write(path, (gs, d, gs))


def test_pggan_tf_release_pickle(tmp_path, nvidia_classes, pggan32):
    path = pggan_tf_pickle(tmp_path / "karras2018iclr-celebahq-32x32.pkl", nvidia_classes, pggan32)
    family, config, params, buffers = convert_tf_pickle(path)
    _, want_config, want_params, want_buffers = convert_state_dict(pggan32)
    assert family == "pggan" and config == want_config
    assert_same_trees(params, want_params)
    assert_same_trees(buffers, want_buffers)


@pytest.mark.parametrize("protocol", [2, 0])  # 0: Python 2's copy_reg._reconstructor path
def test_pggan_theano_pickle(tmp_path, nvidia_classes, pggan32, protocol):
    values = theano_param_values(pggan_tf_variables(pggan32), res_log2=5)
    state = {"build_func_spec": {"func": "G_paper", "resolution": 32, "latent_size": 512},
             "param_values": values, "toplevel_params": {"cur_lod": np.float32(0.0)}}
    net = nvidia_classes["network"](state)
    path = write(tmp_path / "network-final.pkl", (net, net, net), protocol=protocol)
    family, _, params, buffers = convert_tf_pickle(path, kind="pggan")
    _, _, want_params, want_buffers = convert_state_dict(pggan32)
    assert family == "pggan"
    assert_same_trees(params, want_params, exact=False)  # (w * he_std / wscale) * wscale / he_std rounds
    assert_same_trees(buffers, want_buffers)


def test_stylegan_pickle(tmp_path, nvidia_classes):
    _, state = load_spec("stylegan_64_seed7")
    top, mapping_vars, synthesis_vars = stylegan_tf_variables(state)
    cls, easydict = nvidia_classes["dnnlib.tflib.network"], nvidia_classes["dnnlib.util"]
    mapping = tf_network(cls, "G_mapping", "G_mapping", mapping_vars,
                         static_kwargs=easydict(mapping_layers=8, mapping_lrmul=0.01))
    synthesis = tf_network(cls, "G_synthesis", "G_synthesis", synthesis_vars,
                           static_kwargs=easydict(resolution=64, fused_scale="auto", blur_filter=[1, 2, 1]))
    gs = tf_network(cls, "Gs", "G_style", top, components=easydict(mapping=mapping, synthesis=synthesis))
    path = write(tmp_path / "karras2019stylegan-64.pkl", (gs, gs, gs))
    family, config, params, buffers = convert_tf_pickle(path)
    _, want_config, want_params, want_buffers = convert_state_dict(state)
    assert family == "stylegan" and config == want_config
    assert_same_trees(params, want_params)
    assert_same_trees(buffers, want_buffers)


def test_stylegan_pickle_fused_128_names(tmp_path, nvidia_classes):
    # The 128 fixture exercises the fused (TF layout kept) Conv0_up weight at 128x128.
    _, state = load_spec("stylegan_128_seed7")
    top, mapping_vars, synthesis_vars = stylegan_tf_variables(state)
    cls = nvidia_classes["dnnlib.tflib.network"]
    gs = tf_network(cls, "Gs", "G_style", top, components={
        "mapping": tf_network(cls, "G_mapping", "G_mapping", mapping_vars),
        "synthesis": tf_network(cls, "G_synthesis", "G_synthesis", synthesis_vars)})
    family, converted = pickle_to_state_dict(write(tmp_path / "s.pkl", (gs, gs, gs)))
    assert family == "stylegan"
    expected = {k: v for k, v in state.items() if not k.endswith("blur.kernel")}
    assert converted.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(converted[key], value, err_msg=key)


def test_missing_and_unexpected_variables_in_one_error(tmp_path, nvidia_classes, pggan32):
    tf_vars = pggan_tf_variables(pggan32)
    del tf_vars["16x16/Conv1/weight"]
    tf_vars["16x16/Conv2/weight"] = np.zeros((3, 3, 512, 512), np.float32)
    tf_vars["ToRGB_lod0/bias"] = np.zeros(4, np.float32)
    gs = tf_network(nvidia_classes["tfutil"], "Gs", "G_paper", tf_vars)
    with pytest.raises(CheckpointError) as info:
        convert_tf_pickle(write(tmp_path / "bad.pkl", (gs, gs, gs)))
    message = str(info.value)
    assert "16x16/Conv1/weight" in message and "16x16/Conv2/weight" in message and "ToRGB_lod0/bias" in message


def test_wrong_kind_and_unsupported_settings(tmp_path, nvidia_classes, pggan32):
    path = pggan_tf_pickle(tmp_path / "p.pkl", nvidia_classes, pggan32)
    with pytest.raises(CheckpointError, match="not stylegan"):
        convert_tf_pickle(path, kind="stylegan")
    gs = tf_network(nvidia_classes["tfutil"], "Gs", "G_paper", pggan_tf_variables(pggan32),
                    static_kwargs={"use_pixelnorm": False})
    with pytest.raises(CheckpointError, match="use_pixelnorm"):
        convert_tf_pickle(write(tmp_path / "q.pkl", (gs, gs, gs)))


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_refuses_globals_outside_the_allow_list(tmp_path):
    path = write(tmp_path / "evil.pkl", (_Evil(), 1, 2))
    with pytest.raises(CheckpointError, match="system"):
        load_network_pickle(path)
    (tmp_path / "junk.pkl").write_bytes(b"\x80\x04junk")
    with pytest.raises(CheckpointError, match="not a readable network pickle"):
        load_network_pickle(tmp_path / "junk.pkl")
    (tmp_path / "trunc.pkl").write_bytes(pickle.dumps({"a": np.zeros(3)})[:-5])
    with pytest.raises(CheckpointError):
        load_network_pickle(tmp_path / "trunc.pkl")


def test_cli_convert_pickle_then_generate(tmp_path, nvidia_classes, pggan32, capsys):
    import ifgan_jax

    path = pggan_tf_pickle(tmp_path / "pggan.pkl", nvidia_classes, pggan32)
    out = tmp_path / "model"
    assert main(["convert", "--weights", str(path), "-o", str(out)]) == 0
    assert "converted pggan 32x32" in capsys.readouterr().out
    manifest = json.loads((out / "model.json").read_text())
    assert manifest["family"] == "pggan" and manifest["source"]["format"] == "nvidia-pkl"
    assert len(manifest["source"]["sha256"]) == 64
    io = np.load(FIXTURES / "pggan_32_seed7_io.npz")
    G = ifgan_jax.load_generator(out)
    images = np.asarray(G.synthesize(io["z_raw"]))  # the Generator normalizes z, as InterFaceGAN does
    ref = io["image"].transpose(0, 2, 3, 1)
    assert np.linalg.norm(images - ref) / np.linalg.norm(ref) <= PARITY_TOL


def test_cli_convert_errors_are_one_line(tmp_path, capsys):
    assert main(["convert", "--weights", str(tmp_path / "nope.pth"), "-o", str(tmp_path / "m")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    bad = write(tmp_path / "bad.pkl", {"not": "a network"})
    assert main(["convert", "--weights", str(bad), "-o", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "expected a pickled (G, D, Gs)" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()


def test_cli_subprocess_convert_help():
    done = run_cli("convert", "--help")
    assert done.returncode == 0 and "--kind" in done.stdout

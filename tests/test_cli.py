"""The CLI's own conventions: --version, the models listing, one-line usage errors, file modes."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import needs_dcgan

import ifgan_jax
from ifgan_jax import files
from ifgan_jax.cli import main
from ifgan_jax.zoo.registry import MODELS


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"ifgan {ifgan_jax.__version__}"


@needs_dcgan
def test_models_lists_every_entry_and_whether_its_weights_are_here(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("IFGAN_HOME", str(tmp_path))
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(MODELS)
    assert lines[0].startswith("dcgan_digiface (default): dcgan 64px") and "present: " in lines[0]
    user = [line for line in lines if "user file" in line]
    assert user and all(line.endswith("not present") for line in user)


@pytest.mark.parametrize("argv", [["sample", "-n"], ["sampel"], ["edit", "-o", "x"], ["sample", "-n", "two"]])
def test_usage_mistakes_are_one_line_and_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ifgan") and "error: " in err, err


def test_atomic_writes_follow_the_umask(tmp_path):
    """meta.json & co. were 0600 (mkstemp's mode) beside 0644 arrays: unreadable to others on shared storage."""
    files.atomic_write_json(tmp_path / "meta.json", {"a": 1})
    files.atomic_save_npy(tmp_path / "z.npy", np.zeros(3, np.float32))
    np.save(tmp_path / "plain.npy", np.zeros(3, np.float32))
    expected = (tmp_path / "plain.npy").stat().st_mode & 0o777
    for name in ("meta.json", "z.npy"):
        assert (tmp_path / name).stat().st_mode & 0o777 == expected, name


def test_help_shows_the_library_defaults(capsys):
    """Help texts read the defaults from the code that applies them (no hand-copied numbers to go stale)."""
    from ifgan_jax import inversion
    from ifgan_jax.jobs import analyze, invert

    invert_defaults = [f"default {inversion.DEFAULT_STEPS})", f"default {invert.COMMIT_BATCH},",
                       f"{inversion.ENCODER_BATCH} with --steps 0"]
    for argv, wanted in ((["invert", "--help"], invert_defaults),
                         (["analyze", "--help"], [f"default {analyze.DEFAULT_NUM})"])):
        with pytest.raises(SystemExit):
            main(argv)
        text = " ".join(capsys.readouterr().out.split())
        for w in wanted:
            assert w in text, (argv, w)

"""The CLI's own conventions: --version, the models listing."""

from __future__ import annotations

import pytest
from conftest import needs_dcgan

import ifgan_jax
from ifgan_jax.cli import main
from ifgan_jax.registry import MODELS


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

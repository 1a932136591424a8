"""Hostile and careless inputs (issue 15): each ends in one line on stderr and exit code 2 before anything is
written (or, for a damaged model cache, is repaired), instead of a traceback, partial output or a silently
wrong result. Read-only folders need root (a read-only tmpfs mount); those tests skip with the reason."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tracemalloc
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_dcgan

import converters.torch_zip
from converters.torch_checkpoint import read_torch_checkpoint
from ifgan_jax import files
from ifgan_jax.boundary import project_boundary, train_boundaries
from ifgan_jax.cli import main
from ifgan_jax.errors import CheckpointError, InputError
from ifgan_jax.jobs.edit import parse_layers
from ifgan_jax.zoo import store
from ifgan_jax.zoo.cache import resolve_model_dir


def one_line(capsys_or_fd) -> str:
    err = capsys_or_fd.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


@pytest.fixture
def read_only_dir():
    """An empty read-only tmpfs (root ignores file permissions, not a read-only mount)."""
    if os.geteuid() != 0:
        pytest.skip("a read-only mount needs root (as a user, chmod would do, but root ignores it)")
    mount = Path("/tmp") / f"ifgan-ro-{uuid.uuid4().hex[:8]}"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)],
                      capture_output=True).returncode:
        mount.rmdir()
        pytest.skip("this machine does not allow mounting a tmpfs")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)
    mount.rmdir()


@pytest.fixture
def boundary_files(tmp_path):
    rng = np.random.default_rng(0)
    b, c = unit(rng.standard_normal(100)), unit(rng.standard_normal(100))
    paths = {}
    for name, v in {"b": b, "c": c, "b_rounded": b * (1 + 1e-7), "sum": unit(b + c)}.items():
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], v[None].astype(np.float32))
    return paths


# -- numbers and arrays ------------------------------------------------------------------------------------


@needs_dcgan
def test_sample_too_big_for_the_disk_is_refused_up_front_and_a_rerun_works(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["sample", "-n", "1000000000000", "-o", str(out), "--quiet"]) == 2
    assert "No space left on device" in one_line(capsys)
    assert not out.exists()  # no z.npy, no meta.json: another -n may use the folder
    assert main(["sample", "-n", "4", "--images", "none", "-o", str(out), "--quiet"]) == 0


@needs_dcgan
def test_score_of_zero_codes(tmp_path, capsys):
    np.save(tmp_path / "empty.npy", np.zeros((0, 100), np.float32))
    assert main(["score", "-i", str(tmp_path / "empty.npy"), "-o", str(tmp_path / "sc")]) == 2
    assert "no codes" in one_line(capsys)
    assert not (tmp_path / "sc").exists()


@pytest.mark.parametrize(("flags", "message"), [
    (["--seed", "-1"], "--seed must be in"),
    (["--seed", str(2**32 - 1)], "--seed must be in"),  # the curves use seed + 1
    (["--curve-samples", "-5"], "--curve-samples must be >= 1"),
    (["--curve-samples", "0"], "--curve-samples must be >= 1"),
])
def test_demo_numbers_fail_before_any_stage(tmp_path, capsys, flags, message):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--quiet", *flags]) == 2
    assert message in one_line(capsys)
    assert not out.exists()


def test_layers_range_is_checked_without_expanding_it():
    tracemalloc.start()
    with pytest.raises(InputError) as err:
        parse_layers("0-20000000", 18)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(str(err.value)) < 200 and "0-20000000" in str(err.value)
    assert peak < 1 << 20  # the 20-million-number list it used to build peaked near 1 GB
    assert parse_layers("0-2,5", 18) == (0, 1, 2, 5)


# -- names and paths ---------------------------------------------------------------------------------------


def test_long_or_odd_attribute_names_are_refused_before_training(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "codes.npy", rng.standard_normal((200, 8)).astype(np.float32))
    np.save(tmp_path / "scores.npy", rng.standard_normal((200, 2)).astype(np.float32))
    base = ["train-boundary", "-c", str(tmp_path / "codes.npy"), "-s", str(tmp_path / "scores.npy")]
    for names, message in ((["x", "a" * 240], "at most"), (["x", "a/b"], "cannot be used"),
                           (["x", "tab\there"], "cannot be used")):
        out = tmp_path / "out"
        assert main([*base, "-o", str(out), "--attribute", names[0], "--attribute", names[1]]) == 2
        assert message in one_line(capsys)
        assert not out.exists()  # the first attribute's file used to be written before ENAMETOOLONG
    longest = "a" * (files.NAME_MAX_BYTES - files.TEMP_NAME_EXTRA - len("_boundary.npy"))
    assert main([*base, "-o", str(tmp_path / "ok"), "--attribute", "x", "--attribute", longest, "--quiet"]) == 0
    assert (tmp_path / "ok" / f"{longest}_boundary.npy").is_file()


def test_empty_output_path_is_not_the_current_folder(tmp_path, capsys, boundary_files, monkeypatch):
    np.save(tmp_path / "codes.npy", np.random.default_rng(0).standard_normal((200, 8)).astype(np.float32))
    np.save(tmp_path / "scores.npy", np.random.default_rng(1).standard_normal(200).astype(np.float32))
    cwd = tmp_path / "cwd"  # empty: a job that took "" for "." would write here, not be refused for clutter
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    codes, scores = str(tmp_path / "codes.npy"), str(tmp_path / "scores.npy")
    for argv in (["train-boundary", "-c", codes, "-s", scores, "-o", ""],
                 ["project", "-p", str(boundary_files["b"]), "-c", str(boundary_files["c"]), "-o", ""],
                 ["demo", "-o", "", "--quiet"], ["sample", "-n", "2", "-o", "", "--quiet"],
                 ["edit", "-b", str(boundary_files["b"]), "-n", "1", "-o", "", "--quiet"],
                 ["score", "-i", codes, "-o", ""], ["analyze", "-o", ""],
                 ["invert", "-i", str(tmp_path), "-o", ""], ["train-encoder", "-o", ""]):
        assert main(argv) == 2, argv
        assert "got an empty string" in one_line(capsys), argv
    assert not any(cwd.iterdir())


def test_project_refuses_an_existing_output_unless_overwrite(tmp_path, capsys, boundary_files):
    out = tmp_path / "p.npy"
    np.save(out, np.ones((1, 100), np.float32))
    argv = ["project", "-p", str(boundary_files["b"]), "-c", str(boundary_files["c"]), "-o", str(out)]
    assert main(argv) == 2
    assert "--overwrite" in one_line(capsys)
    np.testing.assert_array_equal(np.load(out), 1.0)
    assert main([*argv, "--overwrite"]) == 0
    assert abs(float(np.load(out)[0] @ np.load(boundary_files["c"])[0])) < 1e-6


@needs_dcgan
def test_long_boundary_file_names_still_make_valid_grid_names(tmp_path, boundary_files):
    long = tmp_path / ("b" * (files.NAME_MAX_BYTES - len(".npy")) + ".npy")  # the longest file name there is
    shutil.copyfile(boundary_files["b"], long)
    out = tmp_path / "e"
    assert main(["edit", "-b", str(long), "-n", "1", "--steps", "2", "--no-images", "-o", str(out), "--quiet"]) == 0
    grids = json.loads((out / "edit.json").read_text())["grids"]
    assert len(grids) == 1 and (out / grids[0]).is_file() and len(grids[0]) < files.NAME_MAX_BYTES


# -- silently wrong results --------------------------------------------------------------------------------


@pytest.mark.parametrize("solver", ["jax", "svc"])
def test_identical_codes_give_no_boundary(solver):
    if solver == "svc":
        pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)
    codes = np.repeat(rng.standard_normal((1, 100)).astype(np.float32), 2000, axis=0)
    scores = rng.standard_normal(2000).astype(np.float32)
    with pytest.raises(InputError, match="separates nothing"):
        train_boundaries(codes, scores, solver=solver)  # jax used to return a unit vector from a norm of 3e-6
    # Codes that do vary still train (a control for the tolerance).
    varied = codes + rng.standard_normal(codes.shape).astype(np.float32)
    assert train_boundaries(varied, scores + varied[:, 0], solver=solver).reports[0]["weight_norm"] > 0.01


def test_projection_refuses_what_float32_rounding_makes_dependent(boundary_files, tmp_path, capsys):
    load = {k: np.load(p) for k, p in boundary_files.items()}
    with pytest.raises(InputError, match="span of the conditions"):
        project_boundary(load["b_rounded"], load["b"])  # was "cosine with primal 0.0000": unit-scaled noise
    other = unit(np.random.default_rng(1).standard_normal(100))[None].astype(np.float32)
    with pytest.raises(InputError, match="linearly dependent"):
        project_boundary(other, load["b"], load["c"], load["sum"])  # B, C, unit(B + C) were taken as independent
    with pytest.raises(InputError, match="span of the conditions"):
        project_boundary(load["sum"], load["b"], load["c"])
    ok = project_boundary(load["b"], load["c"])  # genuinely independent: still fine
    assert abs(float(ok[0] @ load["c"][0].astype(np.float64))) < 1e-7
    out = tmp_path / "p.npy"
    argv = ["project", "-p", str(boundary_files["b_rounded"]), "-c", str(boundary_files["b"]), "-o", str(out)]
    assert main(argv) == 2
    assert "span" in one_line(capsys) and not out.exists()


@needs_dcgan
def test_second_edit_into_a_folder_is_refused_or_replaced_never_mixed(tmp_path, capsys, boundary_files):
    out = tmp_path / "e"
    base = ["edit", "-b", str(boundary_files["b"]), "-o", str(out), "--quiet"]
    assert main([*base, "-n", "3", "--steps", "3"]) == 0
    first = sorted(p.name for p in (out / "images").iterdir())
    assert len(first) == 9
    assert main([*base, "-n", "3", "--steps", "3"]) == 0  # the same edit again: already complete
    assert "already complete" in capsys.readouterr().out
    assert main([*base, "-n", "2", "--steps", "4"]) == 2
    assert "different run" in one_line(capsys)
    assert sorted(p.name for p in (out / "images").iterdir()) == first
    (out / "images" / "vacation.png").write_bytes(b"the user's own")
    assert main([*base, "-n", "2", "--steps", "4", "--overwrite"]) == 0
    names = sorted(p.name for p in (out / "images").iterdir())
    assert len(names) == 2 * 4 + 1 and "vacation.png" in names and "000002_00_000.png" not in names
    assert np.load(out / "codes.npy").shape == (2, 1, 4, 100)


# -- storage ----------------------------------------------------------------------------------------------


def test_read_only_output_folders(tmp_path, capsys, read_only_dir, boundary_files):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "codes.npy", rng.standard_normal((200, 8)).astype(np.float32))
    np.save(tmp_path / "scores.npy", rng.standard_normal(200).astype(np.float32))
    for argv in (
        ["train-boundary", "-c", str(tmp_path / "codes.npy"), "-s", str(tmp_path / "scores.npy"),
         "-o", str(read_only_dir / "tb")],
        ["project", "-p", str(boundary_files["b"]), "-c", str(boundary_files["c"]), "-o", str(read_only_dir / "p.npy")],
        ["demo", "-o", str(read_only_dir / "demo"), "--quiet"],
        ["demo", "-o", str(read_only_dir), "--quiet"],
    ):
        assert main(argv) == 2, argv
        assert "read-only file system" in one_line(capsys).lower(), argv


@needs_dcgan
def test_read_only_ifgan_home(tmp_path, capsys, read_only_dir, monkeypatch):
    monkeypatch.setenv("IFGAN_HOME", str(read_only_dir))  # nothing converted there, and nothing can be
    assert main(["sample", "-n", "2", "-o", str(tmp_path / "s"), "--quiet"]) == 2
    err = one_line(capsys)
    assert "IFGAN_HOME" in err and "Read-only file system" in err
    assert not (tmp_path / "s").exists()


@pytest.fixture
def model_home(tmp_path, monkeypatch, dcgan):
    """A private $IFGAN_HOME holding a copy of the converted default model; yields that model's folder."""
    source = resolve_model_dir("dcgan_digiface")
    home = tmp_path / "home"
    shutil.copytree(source, home / "models" / source.name)
    monkeypatch.setenv("IFGAN_HOME", str(home))
    return home / "models" / source.name


def test_damaged_model_cache_is_converted_again(tmp_path, capfd, model_home):
    victim = max((p for p in (model_home / store.ARRAYS).rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    assert main(["sample", "-n", "2", "--images", "none", "-o", str(tmp_path / "s"), "--quiet"]) == 0
    err = capfd.readouterr().err
    assert "is damaged" in err and "Event loop" not in err, err
    assert store.damage(model_home) is None  # re-converted in place
    # A converted folder given with -m is the user's: named in one line, never rewritten.
    victim = next(p for p in (model_home / store.ARRAYS).rglob("*") if p.is_file() and p.stat().st_size)
    victim.write_bytes(b"")
    assert main(["sample", "-m", str(model_home), "-n", "2", "-o", str(tmp_path / "t"), "--quiet"]) == 2
    err = one_line(capfd)
    assert "is damaged" in err and "Event loop" not in err
    assert not (tmp_path / "t").exists()


def test_model_json_that_disagrees_with_its_arrays(tmp_path, capsys, model_home):
    manifest = json.loads((model_home / store.MANIFEST).read_text())
    manifest["config"]["latent_dim"] = 50
    (model_home / store.MANIFEST).write_text(json.dumps(manifest))
    assert main(["sample", "-m", str(model_home), "-n", "2", "-o", str(tmp_path / "s"), "--quiet"]) == 2
    assert "does not match its arrays" in one_line(capsys)
    assert not (tmp_path / "s").exists()  # it used to fail inside the first jitted call, after z.npy


# -- resources --------------------------------------------------------------------------------------------


def _deflated_pth(path: Path, storages: dict[str, bytes]) -> Path:
    """A torch-style zip whose storages are deflated (as a re-packed archive might be)."""
    pickled = b"\x80\x02}q\x00."  # an empty dict: the members are refused before the pickle matters
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickled)
        for key, raw in storages.items():
            zf.writestr(f"archive/data/{key}", raw, compress_type=zipfile.ZIP_DEFLATED)
    return path


def test_zip_members_expanding_past_the_budget_are_refused_before_inflating(tmp_path, monkeypatch):
    # The real budget is twice the archive plus 256 MiB; a 1 MiB allowance keeps this test small and fast.
    monkeypatch.setattr(converters.torch_zip, "EXPANSION_ALLOWANCE", 1 << 20)
    path = _deflated_pth(tmp_path / "bomb.pth", {"0": bytes(8 << 20)})  # 8 MiB of zeros in ~8 KB
    assert path.stat().st_size < 64 << 10
    reader = converters.torch_zip.MemberReader(zipfile.ZipFile(path), path.stat().st_size)
    with pytest.raises(CheckpointError, match="refused before inflating"):
        reader.read("archive/data/0", "storage")
    # Many members each under the budget may not exceed it together.
    path = _deflated_pth(tmp_path / "many.pth", {str(k): bytes(400 << 10) for k in range(4)})
    reader = converters.torch_zip.MemberReader(zipfile.ZipFile(path), path.stat().st_size)
    with pytest.raises(CheckpointError, match="refused before inflating"):
        for k in range(4):
            reader.read(f"archive/data/{k}", "storage")
    assert k == 2  # two members fit in the 1 MiB allowance, the third does not


def test_zip_member_is_held_to_its_declared_size(tmp_path):
    path = _deflated_pth(tmp_path / "ok.pth", {"0": b"\x01" * 1000})
    data = bytearray(path.read_bytes())
    # Patch the central directory's uncompressed size of member "0" upwards: inflating stops short of it.
    zf = zipfile.ZipFile(io.BytesIO(bytes(data)))
    info = zf.getinfo("archive/data/0")
    info.file_size = 2000
    with pytest.raises(CheckpointError, match="declared 2000 bytes"):
        converters.torch_zip.MemberReader(zf, len(data)).read("archive/data/0", "storage")


def test_torch_reader_refuses_an_inflating_pickle(tmp_path, monkeypatch):
    monkeypatch.setattr(converters.torch_zip, "EXPANSION_ALLOWANCE", 1 << 20)
    path = tmp_path / "bomb.pth"
    with zipfile.ZipFile(path, "w") as zf:  # data.pkl itself deflated from 8 MiB
        zf.writestr("archive/data.pkl", bytes(8 << 20), compress_type=zipfile.ZIP_DEFLATED)
    with pytest.raises(CheckpointError, match=f"{path.name}: pickle .* refused before inflating"):
        read_torch_checkpoint(path)

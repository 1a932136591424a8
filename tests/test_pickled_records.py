"""argparse.Namespace entries of training checkpoints (rosinality's `args`, pSp / e4e / ReStyle's `opts`) read as
inert PickledNamespace records by the allow-list unpicklers; every other use of argparse stays refused.

Nothing here needs torch: checkpoints are assembled from pickle opcodes (tests/torch_pickles.py). A Namespace is
written either by Python's own protocol-2 pickler (the bytes torch.save writes for one) or by hand.
"""

from __future__ import annotations

import argparse
import copy
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers.parity import rosinality_state
from helpers.torch_pickles import _call, _dict, _glob, _p, _pickle, _tensor, _write_legacy, _write_zip

from converters import read_torch_checkpoint
from converters.generator_file import convert_generator_file
from converters.nvlabs_pickle import load_nvlabs_pickle
from converters.pickle_globals import PickledNamespace
from converters.torch_checkpoint import flatten_state_dict
from ifgan_jax.cli import main
from ifgan_jax.errors import CheckpointError

ROOT = Path(__file__).resolve().parents[1]
FORMATS = ["zip", "legacy"]
# rosinality/stylegan2-pytorch train.py's options (a subset), as its checkpoints save them under 'args'.
ROS_ARGS = dict(path="/data/ffhq_lmdb", arch="stylegan2", iter=800000, batch=16, size=16, latent=64, n_mlp=2,
                channel_multiplier=2, lr=0.002, r1=10.0, mixing=0.9, ckpt=None, wandb=False, augment=False)
# pSp / e4e options: mostly plain values, some lists.
PSP_OPTS = dict(exp_dir="/exp/psp", dataset_type="ffhq_encode", encoder_type="GradualStyleEncoder", input_nc=3,
                output_size=1024, start_from_latent_avg=True, lpips_lambda=0.8, checkpoint_path=None,
                train_decoder=False, device="cuda:0", progressive_steps=[0, 20000, 40000], w_norm=(0.0, 1e-3))
NAMESPACE = _glob("argparse", "Namespace")


def real_namespace(**fields) -> bytes:
    """An argparse.Namespace as Python's pickler writes it at protocol 2 (GLOBAL, EMPTY_TUPLE, NEWOBJ, dict,
    BUILD, with memo puts), without header and STOP so it can be spliced into a checkpoint."""
    data = pickle.dumps(argparse.Namespace(**fields), protocol=2)
    assert data.startswith(b"\x80\x02" + NAMESPACE + b"q\x00)\x81") and data.endswith(b"b.")
    return data[2:-1]


def namespace(state: bytes, args: bytes = b")") -> bytes:
    """A hand-built Namespace: NEWOBJ with `args` (a tuple's opcodes), then BUILD with `state`."""
    return NAMESPACE + args + b"\x81" + state + b"b"


def encode(tree, storages: dict[str, bytes], legacy: bool) -> bytes:
    """Opcodes for nested dicts of float32 arrays; bytes values are opcodes spliced as they are."""
    if isinstance(tree, bytes):
        return tree
    if isinstance(tree, dict):
        return _dict([(k, encode(v, storages, legacy)) for k, v in tree.items()])
    arr = np.ascontiguousarray(tree, np.float32)
    key = str(len(storages))
    storages[key] = arr.tobytes()
    return _tensor("FloatStorage", key, arr.size, 0, arr.shape, tuple(s // 4 for s in arr.strides), legacy=legacy)


def write_pt(fmt: str, path: Path, tree: dict) -> Path:
    """A torch.save file (zip or legacy stream) of `tree`, made without torch."""
    storages: dict[str, bytes] = {}
    main_pkl = _pickle(encode(tree, storages, fmt == "legacy"))
    if fmt == "legacy":
        return _write_legacy(path, main_pkl, [(k, len(raw) // 4, raw) for k, raw in storages.items()])
    return _write_zip(path, main_pkl, storages)


def read_with_args(fmt: str, path: Path, args: bytes) -> dict:
    return read_torch_checkpoint(write_pt(fmt, path, {"g_ema": {"w": np.arange(6.0).reshape(2, 3)}, "args": args}))


@pytest.mark.parametrize("fmt", FORMATS)
def test_rosinality_args_namespace_is_an_inert_record(tmp_path, fmt):
    ckpt = read_with_args(fmt, tmp_path / "ckpt.pt", real_namespace(**ROS_ARGS))
    rec = ckpt["args"]
    assert type(rec) is PickledNamespace and rec.as_dict() == ROS_ARGS
    # Attribute and item access both read the record; nothing can be written.
    assert (rec.size, rec["latent"], rec.n_mlp, rec.channel_multiplier, rec.lr) == (16, 64, 2, 2, 0.002)
    assert "ckpt" in rec and rec.ckpt is None and len(rec) == len(ROS_ARGS) and list(rec) == list(ROS_ARGS)
    with pytest.raises(AttributeError):
        _ = rec.no_such_option
    with pytest.raises(CheckpointError):
        rec.size = 1024
    with pytest.raises(TypeError):
        rec["size"] = 1024
    assert copy.deepcopy(rec) == rec and copy.copy(rec) == rec
    np.testing.assert_array_equal(flatten_state_dict(ckpt, "g_ema")["w"], np.arange(6.0).reshape(2, 3))
    # The hand-built form (no memo) reads the same.
    hand = namespace(_dict([(k, _p(v)) for k, v in ROS_ARGS.items()]))
    assert read_with_args(fmt, tmp_path / "hand.pt", hand)["args"] == rec


@pytest.mark.parametrize("fmt", FORMATS)
def test_psp_opts_namespace_loads(tmp_path, fmt):
    tree = {"state_dict": {"decoder.style.1.weight": np.ones((4, 4)), "encoder.body.0.weight": np.zeros(3)},
            "latent_avg": np.zeros((1, 4)), "opts": real_namespace(**PSP_OPTS)}
    ckpt = read_torch_checkpoint(write_pt(fmt, tmp_path / "psp.pt", tree))
    opts = ckpt["opts"]
    assert isinstance(opts, PickledNamespace) and opts.as_dict() == PSP_OPTS
    assert opts.encoder_type == "GradualStyleEncoder" and opts["progressive_steps"] == [0, 20000, 40000]
    assert set(flatten_state_dict(ckpt, "state_dict")) == {"decoder.style.1.weight", "encoder.body.0.weight"}


def test_record_values_are_copies_the_pickle_cannot_reach(tmp_path):
    # After BUILD, the file fetches the state's list from its memo and appends to it: the record keeps [].
    body = namespace(_dict([("steps", b"]q\x09")])) + b"h\x09" + _p(5) + b"a0"
    rec = read_with_args("zip", tmp_path / "ckpt.pt", body)["args"]
    assert rec.steps == [] and rec.as_dict() == {"steps": []}


@pytest.mark.parametrize("fmt", FORMATS)
def test_shared_state_is_checked_once_per_load(tmp_path, fmt):
    # 7 bytes per record re-BUILD the memoized state (a 50 000-element list): checking each record's copy
    # anew would cost 5e7 steps for this 150 kB file; once per load it is 5e4.
    records, size = 1000, 50_000
    first = namespace(b"}q\x01(" + _p("steps") + _p(list(range(size))) + b"u")
    body = b"](" + NAMESPACE + b"q\x00)\x81" + first[len(NAMESPACE) + 2:] + b"h\x00)\x81h\x01b" * (records - 1) + b"e"
    path = write_pt(fmt, tmp_path / "many.pt", {"g_ema": {"w": np.ones(2)}, "args": body})
    start = time.perf_counter()
    recs = read_torch_checkpoint(path)["args"]
    assert time.perf_counter() - start < 5
    assert len(recs) == records and recs[0].steps == list(range(size))
    assert all(r.steps is recs[0].steps for r in recs)  # one checked copy, shared


def test_reader_never_imports_argparse(tmp_path):
    path = write_pt("zip", tmp_path / "ckpt.pt", {"g_ema": {"w": np.ones(2)}, "args": real_namespace(size=16)})
    code = ("import sys\nfrom converters import read_torch_checkpoint\n"
            f"rec = read_torch_checkpoint({str(path)!r})['args']\n"
            "assert rec.size == 16 and 'argparse' not in sys.modules, sorted(sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def hostile_bodies(marker: Path) -> dict[str, tuple[bytes, str]]:
    """name -> (Namespace-like opcodes, a phrase of the refusal)."""
    touch = f"touch {marker}"
    self_list = b"]q\x07h\x07a"  # EMPTY_LIST, BINPUT 7, BINGET 7, APPEND: a list that holds itself
    return {
        "state is a list": (namespace(b"]" + _p(1) + b"a"), "not a dict"),
        "slots-style state": (namespace(b"(" + _dict([("a", _p(1))]) + _dict([]) + b"t"), "not a dict"),
        "non-str name": (namespace(_dict([])[:-1] + _p(1) + _p(2) + b"u"), "non-str attribute name"),
        "storage class value": (namespace(_dict([("x", _glob("torch", "FloatStorage"))])), "may not hold"),
        "callable value": (namespace(_dict([("x", _glob("collections", "OrderedDict"))])), "may not hold"),
        "tensor type value": (namespace(_dict([("x", b"(" + _glob("torch", "Tensor") + b"l")])), "may not hold"),
        "self-referential": (namespace(_dict([("x", self_list)])), "nested too deeply"),
        "NEWOBJ arguments": (namespace(_dict([]), args=b"(" + _p("x") + b"t"), "with arguments"),
        "REDUCE with the state": (_call(NAMESPACE, _dict([("x", _p(1))])), "with arguments"),
        "BUILD twice": (namespace(_dict([("a", _p(1))])) + _dict([("a", _p(2))]) + b"b", "twice"),
        "SETITEMS on a record": (namespace(_dict([])) + b"(" + _p("a") + _p(1) + b"u", "corrupt or unreadable"),
        "BUILD on the class": (NAMESPACE + _dict([("a", _p(1))]) + b"b", "corrupt or unreadable"),
        "argparse.ArgumentParser": (_call(_glob("argparse", "ArgumentParser")), "'argparse.ArgumentParser'"),
        "argparse._sys": (_glob("argparse", "_sys"), "'argparse._sys'"),
        "argparse.Action": (_glob("argparse", "Action"), "'argparse.Action'"),
        "argparse._os": (_glob("argparse", "_os"), "'argparse._os'"),
        "os.system in the state": (namespace(_dict([("x", _call(_glob("os", "system"), _p(touch)))])),
                                   "'os.system'"),
    }


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", list(hostile_bodies(Path("/x"))))
def test_hostile_namespaces_are_refused(tmp_path, fmt, name):
    # The benign Namespace loads (so the refusal below is about what changed, not argparse as such) ...
    assert read_with_args(fmt, tmp_path / "ok.pt", real_namespace(size=16))["args"].size == 16
    marker = tmp_path / "pwned"
    body, phrase = hostile_bodies(marker)[name]
    path = write_pt(fmt, tmp_path / "evil.pt", {"g_ema": {"w": np.ones(2)}, "args": body})
    with pytest.raises(CheckpointError) as info:
        read_torch_checkpoint(path)
    message = str(info.value)
    assert phrase in message and path.name in message and "\n" not in message, message
    assert not marker.exists()


def test_nvlabs_reader_reads_namespaces_as_records(tmp_path):
    # NVlabs-style training pickles are plain pickle.dump (protocol 4 today); extra entries are read too.
    data = pickle.dumps({"training_set_kwargs": {"resolution": 16}, "args": argparse.Namespace(**ROS_ARGS)})
    loaded = load_nvlabs_pickle(tmp_path / "snap.pkl", data)
    assert isinstance(loaded["args"], PickledNamespace) and loaded["args"].as_dict() == ROS_ARGS
    for evil, phrase in [(b"\x80\x02" + NAMESPACE + b")\x81]b.", "not a dict"),
                         (b"\x80\x02" + _call(_glob("argparse", "ArgumentParser")) + b".", "argparse.ArgumentParser")]:
        with pytest.raises(CheckpointError, match=phrase):
            load_nvlabs_pickle(tmp_path / "evil.pkl", evil)


def test_rosinality_checkpoint_with_args_converts_like_the_plain_one(tmp_path, monkeypatch):
    state = rosinality_state("stylegan2_rosinality_16_mlp2")
    latent_avg = np.linspace(-1, 1, 64, dtype=np.float32)
    plain = write_pt("zip", tmp_path / "plain.pt", {"g_ema": state, "latent_avg": latent_avg})
    # rosinality's train.py saves {'g', 'd', 'g_ema', 'g_optim', 'd_optim', 'args'}; a stand-in 'd' here.
    saved = write_pt("zip", tmp_path / "train.pt", {"d": {"convs.0.0.weight": np.ones((2, 2))}, "g_ema": state,
                                                    "latent_avg": latent_avg, "args": real_namespace(**ROS_ARGS)})
    family, config, params, buffers = convert_generator_file(saved)
    family0, config0, params0, buffers0 = convert_generator_file(plain)
    assert (family, config) == (family0, config0) and config.resolution == ROS_ARGS["size"]
    for got, want in ((params, params0), (buffers, buffers0)):
        assert jax.tree.structure(got) == jax.tree.structure(want)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    monkeypatch.chdir(tmp_path)
    assert main(["convert", "--weights", os.fspath(saved), "-o", os.fspath(tmp_path / "m")]) == 0

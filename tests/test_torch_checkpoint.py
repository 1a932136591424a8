"""Tests for converters.torch_checkpoint: format coverage, safety against hostile pickles, robustness.

Nothing here needs torch: hostile and synthetic checkpoints are assembled from raw pickle opcodes.
"""

from __future__ import annotations

import importlib.metadata
import io
import os
import pickle
import random
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers.torch_pickles import (
    SAMPLES,
    _assert_same,
    _call,
    _dict,
    _glob,
    _load_expected,
    _p,
    _pickle,
    _tensor,
    _write,
    _write_legacy,
    _write_zip,
)

from converters import read_torch_checkpoint
from converters.torch_checkpoint import flatten_state_dict
from ifgan_jax.errors import CheckpointError

FORMATS = ["zip", "legacy"]


# -- (1) the shared samples and the torch-made fixtures --------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_sample_matches_expected_values(fmt):
    ckpt = read_torch_checkpoint(SAMPLES / f"sample_{fmt}.pth")
    assert set(ckpt) == {"netG_state_dict", "epoch", "meta"}
    assert ckpt["epoch"] == 3 and ckpt["meta"] == {"name": "sample", "lr": 2e-4}
    sd = ckpt["netG_state_dict"]
    assert type(sd).__name__ == "OrderedDict"
    expected = _load_expected("sample_expected.npz")
    _assert_same(dict(sd), expected)
    assert sd["bf16"].dtype == np.float32 and sd["half"].dtype == np.float16
    assert sd["scalar"].shape == () and sd["num_batches_tracked"].dtype == np.int64
    assert flatten_state_dict(ckpt, "netG_state_dict").keys() == expected.keys()


@pytest.mark.parametrize("fmt", FORMATS)
def test_arrays_are_independent_copies(fmt):
    sd = read_torch_checkpoint(SAMPLES / f"sample_{fmt}.pth")["netG_state_dict"]
    # view.full, view.slice and view.transposed share one torch storage; they must not share memory here.
    for name, arr in sd.items():
        assert arr.flags.c_contiguous and arr.flags.writeable and arr.flags.owndata, name
    before = sd["view.slice"].copy()
    sd["view.full"][...] = -1
    sd["view.transposed"][...] = -2
    np.testing.assert_array_equal(sd["view.slice"], before)
    again = read_torch_checkpoint(SAMPLES / f"sample_{fmt}.pth")["netG_state_dict"]
    np.testing.assert_array_equal(again["view.full"], _load_expected("sample_expected.npz")["view.full"])


@pytest.mark.parametrize(
    ("filename", "prefix"), [("extra_legacy.pth", "legacy/"), ("extra_zip_custom_top.pth", "zip/")]
)
def test_torch_made_fixtures_every_dtype(filename, prefix):
    ckpt = read_torch_checkpoint(SAMPLES / filename)
    expected = {k[len(prefix) :]: v for k, v in _load_expected("extra_expected.npz").items() if k.startswith(prefix)}
    assert {"u8", "i8", "i16", "i32", "i64", "bool", "c64", "c128", "bf16", "f16"} <= set(expected)
    _assert_same(flatten_state_dict(ckpt, "state"), expected)
    assert ckpt["step"] == 7
    # nn.Linear's state dict carries torch's _metadata attribute through a BUILD opcode.
    assert ckpt["state"]["lin"]._metadata == {"": {"version": 1}}
    if prefix == "legacy/":
        assert ckpt["shape"] == (2, 3)
    else:
        assert ckpt["dev"] == "cuda:1" and ckpt["blob"] == b"\x00\xffab" and ckpt["tags"] == {"a", "b"}
        assert ckpt["dtype"] == "torch.float16"
        assert ckpt["state"]["u64"].dtype == np.uint64 and ckpt["state"]["u64"][1] == 2**63
        np.testing.assert_array_equal(ckpt["state"]["conj"], np.array([1 - 2j, 3 + 1j], np.complex64))
        np.testing.assert_array_equal(ckpt["state"]["neg"], np.array([-1.0, 2.0], np.float32))


def test_zip_top_folder_is_discovered(tmp_path):
    src = zipfile.ZipFile(SAMPLES / "sample_zip.pth")
    renamed = tmp_path / "renamed.pth"
    with zipfile.ZipFile(renamed, "w") as dst:
        for info in src.infolist():
            dst.writestr("some other-name" + info.filename[len("sample_zip") :], src.read(info))
    assert "some other-name/data.pkl" in zipfile.ZipFile(renamed).namelist()
    _assert_same(dict(read_torch_checkpoint(renamed)["netG_state_dict"]), _load_expected("sample_expected.npz"))


# -- synthetic checkpoints: byte order, views, legacy storage views ----------------------------------------


BF16_VALUES = np.array([1.5, -2.0, 0.15625, 2.0**120], np.float32)  # exactly representable in bfloat16


def _typed_storages(order: str) -> dict[str, tuple[str, bytes]]:
    e = "<" if order == "little" else ">"
    return {
        "f": ("FloatStorage", np.arange(12, dtype=e + "f4").tobytes()),
        "l": ("LongStorage", np.array([-(2**40), 1, 2**62], e + "i8").tobytes()),
        "h": ("HalfStorage", np.array([0.5, -1.25], e + "f2").tobytes()),
        "b": ("BFloat16Storage", (BF16_VALUES.view(np.uint32) >> 16).astype(e + "u2").tobytes()),
        "q": ("BoolStorage", b"\x01\x00\x02"),
        "d": ("DoubleStorage", np.array([np.pi], e + "f8").tobytes()),
    }


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("order", ["little", "big"])
def test_byte_order_views_and_dtypes(tmp_path, fmt, order):
    pairs = [
        ("full", ("f", 0, (3, 4), (4, 1))),
        ("transposed", ("f", 0, (4, 3), (1, 4))),
        ("col", ("f", 1, (3,), (4,))),
        ("scalar", ("f", 11, (), ())),
        ("expanded", ("f", 5, (2, 3), (0, 0))),
        ("empty", ("f", 12, (0, 5), (5, 1))),
        ("long", ("l", 0, (3,), (1,))),
        ("half", ("h", 1, (1,), (1,))),
        ("bf16", ("b", 0, (2, 2), (2, 1))),
        ("flags", ("q", 0, (3,), (1,))),
        ("double", ("d", 0, (), ())),
    ]
    path = _write(fmt, tmp_path / "c.pth", pairs, _typed_storages(order), byteorder=order)
    sd = read_torch_checkpoint(path)
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(sd["full"], base)
    np.testing.assert_array_equal(sd["transposed"], base.T)
    np.testing.assert_array_equal(sd["col"], [1.0, 5.0, 9.0])
    assert sd["scalar"].shape == () and sd["scalar"] == 11.0
    np.testing.assert_array_equal(sd["expanded"], np.full((2, 3), 5.0, np.float32))
    assert sd["empty"].shape == (0, 5) and sd["empty"].dtype == np.float32
    np.testing.assert_array_equal(sd["long"], [-(2**40), 1, 2**62])
    assert sd["half"].dtype == np.float16 and sd["half"].tolist() == [-1.25]
    assert sd["bf16"].dtype == np.float32
    np.testing.assert_array_equal(sd["bf16"], BF16_VALUES.reshape(2, 2))
    assert sd["flags"].dtype == np.bool_ and sd["flags"].tolist() == [True, False, True]
    assert sd["double"] == np.pi
    for arr in sd.values():
        assert arr.dtype.isnative


def test_legacy_storage_view_metadata(tmp_path):
    # torch < 1.x could save a tensor whose storage is a view (view_key, offset, size) of a root storage.
    raw = np.arange(10, dtype="<f4").tobytes()
    body = _dict(
        [
            ("a", _tensor("FloatStorage", "root", 10, 1, (2,), (2,), legacy=True, view=("v1", 4, 5))),
            ("b", _tensor("FloatStorage", "root", 10, 0, (10,), (1,), legacy=True)),
        ]
    )
    path = _write_legacy(tmp_path / "v.pth", _pickle(body), [("root", 10, raw)])
    sd = read_torch_checkpoint(path)
    np.testing.assert_array_equal(sd["a"], [5.0, 7.0])
    np.testing.assert_array_equal(sd["b"], np.arange(10))
    bad = _dict([("a", _tensor("FloatStorage", "root", 10, 0, (6,), (1,), legacy=True, view=("v1", 4, 5)))])
    with pytest.raises(CheckpointError, match="reads past the end"):
        read_torch_checkpoint(_write_legacy(tmp_path / "bad.pth", _pickle(bad), [("root", 10, raw)]))


# -- (2) hostile pickles ---------------------------------------------------------------------------------


class _Evil:
    """Pickles to posix.system(cmd) on Linux; pickling it runs nothing."""

    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def _payloads(marker: Path) -> dict[str, tuple[bytes, str]]:
    """name -> (pickle body that would create ``marker`` if executed, global named in the error)."""
    touch = f"touch {marker}"
    code = f"open({str(marker)!r}, 'w').close()"
    return {
        "os.system": (_call(_glob("os", "system"), _p(touch)), "os.system"),
        "posix.system": (pickle.dumps(_Evil(touch), protocol=2)[2:-1], f"{os.system.__module__}.system"),
        "builtins.eval": (_call(_glob("builtins", "eval"), _p(code)), "builtins.eval"),
        "__builtin__.eval": (_call(_glob("__builtin__", "eval"), _p(code)), "__builtin__.eval"),
        "subprocess.Popen": (
            _call(_glob("subprocess", "Popen"), _p(["touch", str(marker)])),
            "subprocess.Popen",
        ),
        # STACK_GLOBAL (protocol 4) takes the names from the stack, so only find_class can stop it.
        "builtins.exec": (_p("builtins") + _p("exec") + b"\x93(" + _p(code) + b"tR", "builtins.exec"),
        "builtins.getattr": (
            _call(_glob("builtins", "getattr"), _glob("collections", "OrderedDict"), _p("__init__")),
            "builtins.getattr",
        ),
        # INST instantiates whatever find_class returns.
        "inst": (b"(" + _p(touch) + b"ios\nsystem\n", "os.system"),
        # A storage class slot in a persistent id, inside an otherwise plausible state dict.
        "persid": (
            _dict(
                [
                    ("ok", _tensor("FloatStorage", "0", 1, 0, (), ())),
                    (
                        "x",
                        b"((" + _p("storage") + _call(_glob("posix", "system"), _p(touch)) + _p("0") + b"tQt",
                    ),
                ]
            ),
            "posix.system",
        ),
    }


def _hostile_file(fmt: str, path: Path, body: bytes, where: str = "main") -> Path:
    if fmt == "zip":
        return _write_zip(path, _pickle(body), {"0": b"\x00" * 4})
    main = _pickle(_dict([("ok", _tensor("FloatStorage", "0", 1, 0, (), (), legacy=True))]))
    storages = [("0", 1, b"\x00" * 4)]
    if where == "main":
        return _write_legacy(path, _pickle(body), storages)
    return _write_legacy(path, main, storages, **{where: _pickle(body)})


PAYLOAD_NAMES = list(_payloads(Path("/x")))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("payload", PAYLOAD_NAMES)
def test_hostile_globals_are_refused(tmp_path, fmt, payload):
    marker = tmp_path / "pwned"
    body, global_name = _payloads(marker)[payload]
    path = _hostile_file(fmt, tmp_path / f"evil_{fmt}.pth", body)
    with pytest.raises(CheckpointError) as info:
        read_torch_checkpoint(path)
    message = str(info.value)
    assert f"'{global_name}'" in message and "not allowed" in message, message
    assert path.name in message and "\n" not in message
    assert not marker.exists()


@pytest.mark.parametrize("where", ["magic", "sys_info", "keys"])
@pytest.mark.parametrize("payload", ["os.system", "posix.system", "builtins.eval", "subprocess.Popen"])
def test_hostile_legacy_header_pickles_are_refused(tmp_path, where, payload):
    marker = tmp_path / "pwned"
    body, global_name = _payloads(marker)[payload]
    path = _hostile_file("legacy", tmp_path / "evil.pth", body, where=where)
    with pytest.raises(CheckpointError, match=f"'{global_name}'"):
        read_torch_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_build_cannot_mutate_allowed_globals(tmp_path, fmt):
    # BUILD on an allowed global would otherwise let a file change the reader's tables for later loads.
    body = _glob("torch", "FloatStorage") + _dict([("name", b"K\x00")]) + b"b"
    with pytest.raises(CheckpointError):
        read_torch_checkpoint(_hostile_file(fmt, tmp_path / "b.pth", body))
    body = _glob("torch._utils", "_rebuild_tensor_v2") + b"(N}(" + _p("fn") + _p(0) + b"utb"
    with pytest.raises(CheckpointError):
        read_torch_checkpoint(_hostile_file(fmt, tmp_path / "c.pth", body))
    _assert_same(
        dict(read_torch_checkpoint(SAMPLES / f"sample_{fmt}.pth")["netG_state_dict"]),
        _load_expected("sample_expected.npz"),
    )


def test_reader_never_imports_torch():
    read_torch_checkpoint(SAMPLES / "sample_zip.pth")
    read_torch_checkpoint(SAMPLES / "sample_legacy.pth")
    assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules)


# -- (3) fuzzing --------------------------------------------------------------------------------------


def _mutate_bytes(rng: random.Random, data: bytes, limit: int | None = None) -> tuple[bytes, str]:
    if not data:
        return rng.randbytes(rng.randint(1, 16)), "fill"
    buf = bytearray(data)
    end = min(len(buf), limit or len(buf))
    kind = rng.choice(["flip", "flip", "truncate", "insert", "delete", "overwrite"])
    pos = rng.randrange(end)
    if kind == "flip":
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(end)] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        del buf[pos:]
    elif kind == "insert":
        buf[pos:pos] = rng.randbytes(rng.randint(1, 16))
    elif kind == "delete":
        del buf[pos : pos + rng.randint(1, 16)]
    else:
        width = rng.randint(1, 8)
        buf[pos : pos + width] = rng.choice([b"\xff", b"\x00", b"\x7f"]) * width
    return bytes(buf), f"{kind}@{pos}"


def _mutate_zip_member(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    src = zipfile.ZipFile(io.BytesIO(data))
    infos = src.infolist()
    target = rng.choice(infos)
    action = rng.choice(["mutate", "mutate", "drop", "empty"])
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in infos:
            raw = src.read(info)
            if info.filename == target.filename:
                if action == "drop":
                    continue
                raw = b"" if action == "empty" else _mutate_bytes(rng, raw)[0]
            dst.writestr(info.filename, raw)
    return out.getvalue(), f"{action} member {target.filename}"


@pytest.mark.parametrize("fmt", FORMATS)
def test_fuzzed_samples_load_or_raise_checkpoint_error(tmp_path, fmt):
    rng = random.Random(20240611 + len(fmt))
    original = (SAMPLES / f"sample_{fmt}.pth").read_bytes()
    pickle_end = 1624  # legacy: end of the key list pickle, where the raw storage bytes begin
    path = tmp_path / f"fuzz_{fmt}.pth"
    marker = tmp_path / "pwned"
    outcomes = {"loaded": 0, "refused": 0}
    start = time.perf_counter()
    for i in range(300):
        if fmt == "zip" and i % 2:
            data, what = _mutate_zip_member(rng, original)
        else:
            # Half of the legacy mutations aim at the pickles, where the parsing happens.
            limit = pickle_end if fmt == "legacy" and i % 2 else None
            data, what = _mutate_bytes(rng, original, limit)
        path.write_bytes(data)
        try:
            ckpt = read_torch_checkpoint(path)
        except CheckpointError as exc:
            assert str(exc).startswith(str(path)) and "\n" not in str(exc), (what, str(exc))
            outcomes["refused"] += 1
            continue
        except Exception as exc:  # pragma: no cover - this is the failure being tested for
            pytest.fail(f"mutation {i} ({what}) raised {type(exc).__name__}: {exc}")
        outcomes["loaded"] += 1
        try:  # a mutated key or value may still load; the state dict helper must fail cleanly then
            flatten_state_dict(ckpt, "netG_state_dict")
        except CheckpointError:
            pass
        except Exception as exc:  # pragma: no cover
            pytest.fail(f"mutation {i} ({what}): flatten raised {type(exc).__name__}: {exc}")
    assert not marker.exists()
    assert outcomes["refused"] > 50, outcomes  # the mutations really do break things
    assert time.perf_counter() - start < 20


# -- (4) bad inputs and corrupt metadata -------------------------------------------------------------


def test_unreadable_inputs(tmp_path):
    cases = {
        "missing.pth": ("no such file", None),
        "empty.pth": ("empty", b""),
        "random.pth": ("not a PyTorch checkpoint", random.Random(1).randbytes(4096)),
        "text.pth": ("not a PyTorch checkpoint", b"this is a README, not weights\n" * 20),
        "plain.pkl": ("wrong magic", pickle.dumps({"a": 1}, protocol=2)),
        "notorch.zip": ("no <folder>/data.pkl", None),
        "old.tar": ("tar-based", None),
        "junk_zip.pth": ("corrupt or unreadable", b"PK\x03\x04" + b"\x00" * 100),
    }
    for name, (expected, content) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        elif name.endswith(".zip"):
            with zipfile.ZipFile(path, "w") as zf:
                zf.writestr("readme.txt", "hello")
        elif name.endswith(".tar"):
            with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
                info = tarfile.TarInfo("sys_info")
                info.size = 3
                tf.addfile(info, io.BytesIO(b"abc"))
        with pytest.raises(CheckpointError, match=expected) as info:
            read_torch_checkpoint(path)
        assert name in str(info.value)
    with pytest.raises(CheckpointError, match="is a directory"):
        read_torch_checkpoint(tmp_path)


F4 = {"f": ("FloatStorage", np.arange(6, dtype="<f4").tobytes())}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([("x", ("f", 4, (3,), (1,)))], "reads past the end"),
        ([("x", ("f", 0, (2, 3), (3, 2)))], "reads past the end"),
        ([("x", ("f", 7, (), ()))], "reads past the end"),
        ([("x", ("f", -1, (2,), (1,)))], "non-negative"),
        ([("x", ("f", 0, (-2,), (1,)))], "non-negative"),
        ([("x", ("f", 0, (2,), (-1,)))], "non-negative"),
        ([("x", ("f", 0, (2, 3), (1,)))], "different lengths"),
        ([("x", ("f", 0, (1 << 20, 1 << 20), (0, 0)))], "more than this file can plausibly hold"),
        ([("x", ("f", 0, (2,) * 65, (0,) * 65))], "at most 64"),
    ],
)
def test_bad_tensor_metadata(tmp_path, fmt, pairs, message):
    path = _write(fmt, tmp_path / "bad.pth", pairs, F4)
    with pytest.raises(CheckpointError, match=message):
        read_torch_checkpoint(path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_huge_claimed_storage_is_refused_before_allocating(tmp_path, fmt):
    claim = {"f": 1 << 40}  # 4 TiB of float32 claimed by a 1 KB file
    pairs = [("x", ("f", 0, (1 << 40,), (1,)))]
    path = _write(fmt, tmp_path / "huge.pth", pairs, F4, claimed_numel=claim)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="claims|holds|described"):
        read_torch_checkpoint(path)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"Nr" + (2**31).to_bytes(4, "little"), "memo index"),  # would make the unpickler zero a 16 GB memo
        (b"\x8e" + (2**40).to_bytes(8, "little") + b"abc", "corrupt or unreadable"),  # BINBYTES8 of 1 TiB
        (_dict([("x", _tensor("FloatStorage", "0", 1, 0, (2**100,), (1,)))]), "int64"),
    ],
)
def test_pickle_resource_claims_are_refused_cheaply(tmp_path, body, message):
    path = _write_zip(tmp_path / "claims.pth", _pickle(body), {"0": b"\x00" * 4})
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=message):
        read_torch_checkpoint(path)
    assert time.perf_counter() - start < 1.0


def test_zip_missing_and_short_storages(tmp_path):
    body = _pickle(_dict([("x", _tensor("FloatStorage", "0", 6, 0, (6,), (1,)))]))
    with pytest.raises(CheckpointError, match="'archive/data/0' is missing"):
        read_torch_checkpoint(_write_zip(tmp_path / "a.pth", body, {}))
    with pytest.raises(CheckpointError, match="holds 8 bytes"):
        read_torch_checkpoint(_write_zip(tmp_path / "b.pth", body, {"0": b"\x00" * 8}))
    with pytest.raises(CheckpointError, match="unknown byte order"):
        read_torch_checkpoint(_write_zip(tmp_path / "c.pth", body, {"0": b"\x00" * 24}, byteorder=b"middle"))
    # No byteorder record (torch 1.6-1.9): little-endian.
    ok = read_torch_checkpoint(_write_zip(tmp_path / "d.pth", body, {"0": F4["f"][1]}, byteorder=None))
    np.testing.assert_array_equal(ok["x"], np.arange(6))


def test_legacy_missing_truncated_and_mismatched_storages(tmp_path):
    raw = np.arange(6, dtype="<f4").tobytes()
    main = _pickle(_dict([("x", _tensor("FloatStorage", "k", 6, 0, (6,), (1,), legacy=True))]))
    with pytest.raises(CheckpointError, match="'k' is used by a tensor but its data is missing"):
        read_torch_checkpoint(_write_legacy(tmp_path / "a.pth", main, [], keys=pickle.dumps([], protocol=2)))
    with pytest.raises(CheckpointError, match="truncated"):
        read_torch_checkpoint(_write_legacy(tmp_path / "b.pth", main, [("k", 6, raw[:-1])]))
    with pytest.raises(CheckpointError, match="holds 5 elements"):
        read_torch_checkpoint(_write_legacy(tmp_path / "c.pth", main, [("k", 5, raw[:20])]))
    with pytest.raises(CheckpointError, match="listed but no tensor uses it"):
        read_torch_checkpoint(_write_legacy(tmp_path / "d.pth", main, [("other", 6, raw)]))
    with pytest.raises(CheckpointError, match="protocol version"):
        path = _write_legacy(tmp_path / "e.pth", main, [("k", 6, raw)])
        data = path.read_bytes().replace(pickle.dumps(1001, protocol=2), pickle.dumps(1002, protocol=2), 1)
        path.write_bytes(data)
        read_torch_checkpoint(path)


def test_deep_nesting_is_a_checkpoint_error(tmp_path):
    nested = b"".join(b"}" + _p(f"k{i}") for i in range(100)) + b"]" + b"s" * 100
    with pytest.raises(CheckpointError, match="nested too deeply"):
        flatten_state_dict(read_torch_checkpoint(_write_zip(tmp_path / "d.pth", _pickle(nested), {})))


# -- flatten_state_dict ------------------------------------------------------------------------------------


def test_flatten_state_dict():
    a, b = np.zeros(2), np.ones(3)
    assert list(flatten_state_dict({"x": {"w": a, "y": {"b": b}}, "z": a})) == ["x.w", "x.y.b", "z"]
    assert flatten_state_dict({"sd": {"w": a}, "epoch": 3}, "sd") == {"w": a}
    with pytest.raises(CheckpointError, match="no key 'netG'; available keys: 'sd', 'epoch'"):
        flatten_state_dict({"sd": {"w": a}, "epoch": 3}, "netG")
    with pytest.raises(CheckpointError, match="'epoch' is a int, not a tensor"):
        flatten_state_dict({"sd": {"w": a}, "epoch": 3})
    with pytest.raises(CheckpointError, match="two entries named 'a.b'"):
        flatten_state_dict({"a.b": a, "a": {"b": b}})
    with pytest.raises(CheckpointError, match="expected a state dict"):
        flatten_state_dict([a])


# -- (5) the real DCGAN weights ----------------------------------------------------------------------------


def _dcgan_weights() -> Path:
    try:
        dist = importlib.metadata.distribution("gan-face-generate")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("gan-face-generate is not installed")
    path = Path(str(dist.locate_file("gan_face_generate/weights.tar")))
    if not path.is_file():
        pytest.skip("gan-face-generate has no weights.tar")
    return path


def test_dcgan_weights_load():
    path = _dcgan_weights()
    assert zipfile.ZipFile(path).namelist()[0].startswith("weights/")
    sd = flatten_state_dict(read_torch_checkpoint(path), "netG_state_dict")
    expected_shapes = {
        "main.0.weight": (100, 512, 4, 4),
        "main.1.weight": (512,),
        "main.1.running_var": (512,),
        "main.1.num_batches_tracked": (),
        "main.3.weight": (512, 256, 4, 4),
        "main.6.weight": (256, 128, 4, 4),
        "main.9.weight": (128, 64, 4, 4),
        "main.10.bias": (64,),
        "main.12.weight": (64, 3, 4, 4),
    }
    assert len(sd) == 25
    for name, shape in expected_shapes.items():
        assert sd[name].shape == shape, name
    assert sd["main.1.num_batches_tracked"].dtype == np.int64 and int(sd["main.1.num_batches_tracked"]) == 30070
    conv0 = sd["main.0.weight"]
    assert conv0.dtype == np.float32 and np.all(np.isfinite(conv0))
    # First values and a summary, checked against torch.load while developing.
    np.testing.assert_allclose(conv0.ravel()[:3], [0.03532382, 0.04766181, -0.01751809], rtol=1e-6)
    assert abs(float(np.abs(conv0).mean()) - 0.0316456) < 1e-6
    assert np.all(sd["main.1.running_var"] > 0)

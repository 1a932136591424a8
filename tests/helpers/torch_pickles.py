"""Torch-like checkpoints assembled from raw pickle opcodes, without torch (for test_torch_checkpoint.py)."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "pth_samples"
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _p(value: object) -> bytes:
    """Protocol-2 opcodes for a plain value, without header, STOP or memo (so fragments can be spliced)."""
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=2)
    pickler.fast = True
    pickler.dump(value)
    data = buf.getvalue()
    assert data[:2] == b"\x80\x02" and data[-1:] == b"."
    return data[2:-1]


def _glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _call(func: bytes, *args: bytes) -> bytes:
    return func + b"(" + b"".join(args) + b"tR"


def _storage_pid(cls: str, key: object, numel: int, legacy: bool, view: object = None) -> bytes:
    fields = [_p("storage"), _glob("torch", cls), _p(key), _p("cpu"), _p(numel)]
    if legacy:
        fields.append(_p(view))
    return b"(" + b"".join(fields) + b"tQ"


def _tensor(cls, key, numel, offset, size, stride, *, legacy=False, view=None) -> bytes:
    hooks = _glob("collections", "OrderedDict") + b")R"
    return _call(
        _glob("torch._utils", "_rebuild_tensor_v2"),
        _storage_pid(cls, key, numel, legacy, view),
        _p(offset),
        _p(tuple(size)),
        _p(tuple(stride)),
        b"\x89",  # NEWFALSE: requires_grad
        hooks,
    )


def _dict(pairs: list[tuple[str, bytes]]) -> bytes:
    return b"}(" + b"".join(_p(k) + v for k, v in pairs) + b"u"


def _pickle(body: bytes) -> bytes:
    return b"\x80\x02" + body + b"."


def _write_zip(path: Path, data_pkl: bytes, storages: dict[str, bytes], top="archive", byteorder=b"little"):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{top}/data.pkl", data_pkl)
        if byteorder is not None:
            zf.writestr(f"{top}/byteorder", byteorder)
        for key, raw in storages.items():
            zf.writestr(f"{top}/data/{key}", raw)
        zf.writestr(f"{top}/version", b"3\n")
    return path


def _write_legacy(path: Path, main_pkl: bytes, storages: list[tuple[str, int, bytes]], little=True, **parts):
    order = "little" if little else "big"
    sys_info = {"protocol_version": 1001, "little_endian": little, "type_sizes": {"short": 2, "int": 4}}
    out = parts.get("magic", pickle.dumps(LEGACY_MAGIC, protocol=2))
    out += pickle.dumps(1001, protocol=2)
    out += parts.get("sys_info", pickle.dumps(sys_info, protocol=2))
    out += main_pkl
    out += parts.get("keys", pickle.dumps([key for key, _, _ in storages], protocol=2))
    for _key, numel, raw in storages:
        out += numel.to_bytes(8, order, signed=True) + raw
    path.write_bytes(out)
    return path


def _write(fmt: str, path: Path, pairs: list[tuple[str, tuple]], storages: dict[str, tuple[str, bytes]], **kw):
    """Write a checkpoint {name: tensor} in either format.

    pairs: (name, (storage_key, offset, size, stride[, legacy_view])); storages: key -> (cls, raw bytes).
    """
    itemsize = {
        "FloatStorage": 4,
        "LongStorage": 8,
        "HalfStorage": 2,
        "BFloat16Storage": 2,
        "BoolStorage": 1,
        "DoubleStorage": 8,
        "IntStorage": 4,
        "ByteStorage": 1,
    }
    numels = {k: len(raw) // itemsize[cls] for k, (cls, raw) in storages.items()}
    legacy = fmt == "legacy"
    body = []
    for name, (key, offset, size, stride, *view) in pairs:
        cls = storages[key][0]
        numel = kw.get("claimed_numel", {}).get(key, numels[key])
        view_meta = view[0] if view else None
        body.append((name, _tensor(cls, key, numel, offset, size, stride, legacy=legacy, view=view_meta)))
    main = _pickle(_dict(body))
    if legacy:
        items = [(k, numels[k], raw) for k, (_cls, raw) in storages.items()]
        return _write_legacy(path, main, items, little=kw.get("byteorder", "little") == "little")
    raws = {k: raw for k, (_cls, raw) in storages.items()}
    return _write_zip(path, main, raws, top=kw.get("top", "archive"), byteorder=kw.get("byteorder", "little").encode())


def _load_expected(name: str) -> dict[str, np.ndarray]:
    with np.load(SAMPLES / name) as npz:
        return {k: npz[k] for k in npz.files}


def _assert_same(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert list(actual) == list(expected)
    for name, want in expected.items():
        got = actual[name]
        assert isinstance(got, np.ndarray), name
        assert got.dtype == want.dtype, (name, got.dtype, want.dtype)
        assert got.shape == want.shape, (name, got.shape, want.shape)
        np.testing.assert_array_equal(got, want, err_msg=name)

"""Read ``torch.save`` checkpoints into numpy without importing torch and without running pickled code.

Two on-disk formats are handled:

* the zip format (torch >= 1.6): ``<top>/data.pkl`` holds the object pickle, ``<top>/data/<key>`` the raw
  bytes of each storage and ``<top>/byteorder`` their byte order. ``<top>`` is whatever folder name the
  writer chose (often ``archive`` or the file's stem), so it is found from the ``data.pkl`` entry.
* the legacy stream (torch < 1.6): five pickles back to back (magic number, protocol version, sys_info,
  the object pickle, the list of storage keys) followed, for each key, by an int64 element count and the
  storage's raw bytes. The very old tar-based format (torch < 0.4) is recognised and refused.

Pickles are read by a restricted unpickler: every global a pickle names is looked up in an explicit
allow-list that maps torch's rebuild helpers to small pure-python stand-ins defined here, so nothing from
torch (or anything else named in the file) is imported or called. Tensors come back as fresh, contiguous,
native-byte-order numpy arrays; ``nn.Parameter`` becomes a plain array. bfloat16 is widened to float32
(exactly; numpy has no bfloat16), so callers see only standard numpy dtypes. An ``argparse.Namespace`` of
training options (rosinality's ``'args'``, pSp / e4e's ``'opts'``) comes back as an inert, read-only
:class:`converters.pickle_globals.PickledNamespace` of plain values; argparse is never imported.

Every failure -- missing file, corrupt archive, truncated stream, a disallowed global, tensor metadata that
points outside its storage -- surfaces as :class:`converters.errors.CheckpointError` with a one-line
message that starts with the file name.
"""

from __future__ import annotations

import io
import math
import mmap
import os
import pickle
import pickletools
import stat
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from converters.pickle_globals import namespace_globals, record_memo
from converters.torch_zip import EXPANSION_ALLOWANCE, MemberReader, find_top
from ifgan_jax.errors import CheckpointError

__all__ = ["flatten_state_dict", "read_torch_checkpoint"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
# numpy 2 supports 64 dimensions; anything above cannot be a real tensor and would make numpy raise.
_MAX_NDIM = 64
# Tensors may legitimately be larger than their storage (expanded views with stride 0), and several
# tensors may view one storage. A hostile pickle can exploit both to request terabytes from a tiny file by
# re-using one storage over and over, so the arrays built for one file may total at most twice the file's
# size plus this allowance (zip members read obey the same bound: converters/torch_zip.py).
_EXTRA_OUTPUT_BYTES = EXPANSION_ALLOWANCE
_MAX_MESSAGE_PART = 120


def _short(value: object) -> str:
    """Render a value for an error message: one line, bounded length (pickle strings can be huge)."""
    try:
        text = value if isinstance(value, str) else repr(value)
    except Exception:  # e.g. an int too long for str(); the message only needs a hint
        text = f"<{type(value).__name__}>"
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    if len(text) > _MAX_MESSAGE_PART:
        text = text[: _MAX_MESSAGE_PART - 3] + "..."
    return text


class _Frozen:
    """Base for the objects a pickle can get hold of: no __dict__ and no mutation.

    The pickle BUILD opcode sets attributes on whatever object is on the stack; without this a hostile
    file could rewrite, say, the dtype table entries used for the rest of the load.
    """

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise CheckpointError(f"checkpoint tries to set attribute {_short(name)!r} on {self!r}")

    def __delattr__(self, name: str) -> None:
        raise CheckpointError(f"checkpoint tries to delete attribute {_short(name)!r}")

    def __setstate__(self, state: object) -> None:
        raise CheckpointError(f"checkpoint tries to change the state of a {type(self).__name__}")

    def __repr__(self) -> str:
        return f"torch.{getattr(self, 'name', '?')}"


class _DType(_Frozen):
    """A torch dtype: how its elements are stored on disk and what numpy dtype they become."""

    __slots__ = ("name", "stored", "result")

    def __init__(self, name: str, stored: str, result: str) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "stored", np.dtype(stored))
        object.__setattr__(self, "result", np.dtype(result))

    @property
    def itemsize(self) -> int:
        return self.stored.itemsize


class _StorageType(_Frozen):
    """A storage class global such as ``torch.FloatStorage`` (typed) or ``torch.UntypedStorage`` (bytes)."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: _DType) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "dtype", dtype)


class _TensorType(_Frozen):
    """``torch.Tensor`` / ``nn.Parameter`` when named as a type (``_rebuild_from_type_v2``)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "name", name)


class _Callable(_Frozen):
    """An allowed global function; calls go to a pure-python implementation bound to the current load."""

    __slots__ = ("name", "fn")

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "fn", fn)

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    def __repr__(self) -> str:
        return str(self.name)


class _StorageRef(_Frozen):
    """A storage handed to the rebuild functions: a byte range of one file storage plus its dtype.

    ``raw`` is None during the legacy format's first pass, which only collects which storages exist.
    """

    __slots__ = ("key", "dtype", "raw", "byte_offset", "nbytes")

    def __init__(self, key: object, dtype: _DType, raw: bytes | None, byte_offset: int, nbytes: int) -> None:
        for name, value in (("key", key), ("dtype", dtype), ("raw", raw)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "byte_offset", byte_offset)
        object.__setattr__(self, "nbytes", nbytes)


# Stored element type, then the numpy dtype handed back. bool is stored as one byte per element; bfloat16
# is the upper half of a float32, so widening it is exact.
_DTYPES: dict[str, _DType] = {
    name: _DType(name, stored, result)
    for name, stored, result in (
        ("float32", "f4", "f4"),
        ("float64", "f8", "f8"),
        ("float16", "f2", "f2"),
        ("bfloat16", "u2", "f4"),
        ("uint8", "u1", "u1"),
        ("int8", "i1", "i1"),
        ("int16", "i2", "i2"),
        ("int32", "i4", "i4"),
        ("int64", "i8", "i8"),
        ("bool", "u1", "?"),
        ("complex64", "c8", "c8"),
        ("complex128", "c16", "c16"),
        ("uint16", "u2", "u2"),
        ("uint32", "u4", "u4"),
        ("uint64", "u8", "u8"),
    )
}
_DTYPE_ALIASES = {
    "float": "float32",
    "double": "float64",
    "half": "float16",
    "short": "int16",
    "int": "int32",
    "long": "int64",
    "cfloat": "complex64",
    "cdouble": "complex128",
}
_STORAGE_CLASSES = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "ByteStorage": "uint8",
    "CharStorage": "int8",
    "ShortStorage": "int16",
    "IntStorage": "int32",
    "LongStorage": "int64",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
}
_UNTYPED_STORAGE = _StorageType("UntypedStorage", _DTYPES["uint8"])

# Python 2 era pickles (protocol 2 keeps these spellings for compatibility) name builtins differently.
_MODULE_ALIASES = {"__builtin__": "builtins", "copy_reg": "copyreg"}

# Out-of-band buffers and the extension registry are never produced by torch.save; refusing them up front
# keeps the set of code paths a hostile file can reach small.
_FORBIDDEN_OPCODES = {"NEXT_BUFFER", "READONLY_BUFFER", "EXT1", "EXT2", "EXT4"}


def _static_globals() -> dict[tuple[str, str], object]:
    """The allowed globals that do not depend on the load in progress."""
    table: dict[tuple[str, str], object] = {}
    for cls_name, dtype_name in _STORAGE_CLASSES.items():
        storage_type = _StorageType(cls_name, _DTYPES[dtype_name])
        # Checkpoints saved from the GPU by torch < 2 name the CUDA storage classes.
        table[("torch", cls_name)] = storage_type
        table[("torch.cuda", cls_name)] = storage_type
    table[("torch", "UntypedStorage")] = _UNTYPED_STORAGE
    table[("torch.storage", "UntypedStorage")] = _UNTYPED_STORAGE
    # A dtype global becomes the plain string "torch.float32": readable when a checkpoint stores a dtype
    # as a value, and _rebuild_tensor_v3 maps it back through _DTYPES.
    for name in _DTYPES:
        table[("torch", name)] = f"torch.{name}"
    for alias, name in _DTYPE_ALIASES.items():
        table[("torch", alias)] = f"torch.{name}"
    table[("torch", "Tensor")] = _TensorType("Tensor")
    table[("torch._tensor", "Tensor")] = table[("torch", "Tensor")]
    table[("torch.nn.parameter", "Parameter")] = _TensorType("nn.Parameter")
    pure = {
        ("collections", "OrderedDict"): OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "complex"): complex,
        ("torch", "Size"): _torch_size,
        ("torch", "device"): _torch_device,
        ("_codecs", "encode"): _codecs_encode,
    }
    for (module, name), fn in pure.items():
        table[(module, name)] = _Callable(f"{module}.{name}", fn)
    # A class, not a _Callable: NEWOBJ needs a type. Its __new__ takes no arguments and its __setstate__
    # keeps only plain data (converters/pickle_globals.py).
    table.update(namespace_globals())
    return table


def _torch_size(dims: object = ()) -> tuple[int, ...]:
    """``torch.Size`` -> tuple of non-negative ints."""
    return _int_tuple(dims, "torch.Size")


def _torch_device(kind: object, index: object = None) -> str:
    """``torch.device`` -> its string form ('cpu', 'cuda:0'); everything is loaded to host memory anyway."""
    if not isinstance(kind, str) or (index is not None and not isinstance(index, int)):
        raise CheckpointError("malformed torch.device in checkpoint")
    return kind if index is None else f"{kind}:{index}"


def _codecs_encode(text: object, encoding: object = "utf-8") -> bytes:
    """How protocol-2 pickles spell a bytes object: ``_codecs.encode(str, 'latin1')``."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "ascii", "utf-8", "utf8"):
        raise CheckpointError("checkpoint calls _codecs.encode with unexpected arguments")
    return text.encode(encoding)


_STATIC_GLOBALS = _static_globals()


def _nonneg_int(value: object, what: str) -> int:
    # torch keeps sizes, strides and offsets in int64; bounding them also keeps the arithmetic below cheap
    # (pickle ints can be megabytes long).
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 63:
        raise CheckpointError(f"tensor {what} must be a non-negative int64, got {_short(value)}")
    return value


def _int_tuple(value: object, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple | list) or len(value) > _MAX_NDIM:
        raise CheckpointError(f"tensor {what} must be a tuple of at most {_MAX_NDIM} ints, got {_short(value)}")
    return tuple(_nonneg_int(v, what) for v in value)


class _Loader:
    """State for reading one file: the storage source, byte order and output budget."""

    def __init__(
        self,
        storage_for: Callable[[tuple[Any, ...]], _StorageRef],
        byteorder: str,
        budget: int,
    ) -> None:
        self._storage_for = storage_for
        self._order = "<" if byteorder == "little" else ">"
        self._budget = budget
        rebuild = {
            "_rebuild_tensor": self._rebuild_tensor,
            "_rebuild_tensor_v2": self._rebuild_tensor_v2,
            "_rebuild_tensor_v3": self._rebuild_tensor_v3,
            "_rebuild_parameter": self._rebuild_parameter,
            "_rebuild_parameter_with_state": self._rebuild_parameter_with_state,
        }
        self.globals = dict(_STATIC_GLOBALS)
        for name, fn in rebuild.items():
            self.globals[("torch._utils", name)] = _Callable(f"torch._utils.{name}", fn)
        self._tensor_builders = {id(self.globals[("torch._utils", name)]) for name in rebuild}
        self.globals[("torch._tensor", "_rebuild_from_type_v2")] = _Callable(
            "torch._tensor._rebuild_from_type_v2", self._rebuild_from_type_v2
        )
        self.globals[("torch._tensor", "_rebuild_from_type")] = _Callable(
            "torch._tensor._rebuild_from_type", self._rebuild_from_type_v2
        )

    # -- pickle hooks ---------------------------------------------------------------------------------

    def find_class(self, module: str, name: str) -> object:
        found = self.globals.get((_MODULE_ALIASES.get(module, module), name))
        if found is None:
            raise CheckpointError(_disallowed_global(module, name))
        return found

    def persistent_load(self, pid: object) -> _StorageRef:
        if not isinstance(pid, tuple) or not pid:
            raise CheckpointError(f"unexpected persistent id {_short(pid)} (expected a storage reference)")
        tag = pid[0].decode("ascii", "replace") if isinstance(pid[0], bytes) else pid[0]
        if tag == "module":
            raise CheckpointError(
                "checkpoint pickles a whole nn.Module object; only state dicts of tensors can be read"
            )
        if tag != "storage":
            raise CheckpointError(f"unexpected persistent id type {_short(tag)} (expected 'storage')")
        return self._storage_for(pid)

    def unpickle(self, stream: Any) -> Any:
        """Scan then load one pickle from ``stream`` (BytesIO or mmap), leaving it right after STOP."""
        start = stream.tell()
        _prescan(stream, self.globals)
        stream.seek(start)
        with record_memo():
            return _RestrictedUnpickler(stream, self.find_class, self.persistent_load).load()

    # -- tensor rebuilding ----------------------------------------------------------------------------

    def _rebuild_tensor(self, storage: object, storage_offset: object, size: object, stride: object) -> Any:
        if not isinstance(storage, _StorageRef):
            raise CheckpointError(f"tensor refers to {type(storage).__name__} where a storage was expected")
        return self._array(storage, storage.dtype, storage_offset, size, stride, None)

    def _rebuild_tensor_v2(
        self,
        storage: object,
        storage_offset: object,
        size: object,
        stride: object,
        requires_grad: object = False,
        backward_hooks: object = None,
        metadata: object = None,
    ) -> Any:
        # requires_grad and hooks mean nothing for numpy arrays.
        if not isinstance(storage, _StorageRef):
            raise CheckpointError(f"tensor refers to {type(storage).__name__} where a storage was expected")
        return self._array(storage, storage.dtype, storage_offset, size, stride, metadata)

    def _rebuild_tensor_v3(
        self,
        storage: object,
        storage_offset: object,
        size: object,
        stride: object,
        requires_grad: object,
        backward_hooks: object,
        dtype: object,
        metadata: object = None,
    ) -> Any:
        # torch >= 2 uses this for dtypes without a legacy storage class (uint16/32/64 ...): the storage is
        # untyped bytes and the dtype travels as a separate global.
        if not isinstance(storage, _StorageRef):
            raise CheckpointError(f"tensor refers to {type(storage).__name__} where a storage was expected")
        found = _DTYPES.get(dtype.removeprefix("torch.")) if isinstance(dtype, str) else None
        if found is None:
            raise CheckpointError(f"tensor has unsupported dtype {_short(dtype)}")
        return self._array(storage, found, storage_offset, size, stride, metadata)

    def _rebuild_parameter(self, data: object, requires_grad: object, backward_hooks: object) -> Any:
        return self._check_tensor(data, "nn.Parameter")

    def _rebuild_parameter_with_state(
        self, data: object, requires_grad: object, backward_hooks: object, state: object
    ) -> Any:
        # Python attributes set on a Parameter subclass are dropped: only the values matter here.
        return self._check_tensor(data, "nn.Parameter")

    def _rebuild_from_type_v2(self, func: object, new_type: object, args: object, state: object = None) -> Any:
        if id(func) not in self._tensor_builders or not isinstance(new_type, _TensorType):
            raise CheckpointError(f"unsupported tensor subclass rebuild via {_short(func)}")
        if not isinstance(args, tuple):
            raise CheckpointError("malformed tensor subclass arguments")
        return func(*args)  # type: ignore[operator]

    @staticmethod
    def _check_tensor(data: object, what: str) -> Any:
        # None is what the legacy reader's first pass (no data yet) gets back from the tensor builders.
        if data is not None and not isinstance(data, np.ndarray):
            raise CheckpointError(f"{what} wraps {type(data).__name__} instead of a tensor")
        return data

    def _array(
        self,
        storage: _StorageRef,
        dtype: _DType,
        storage_offset: object,
        size: object,
        stride: object,
        metadata: object,
    ) -> np.ndarray | None:
        offset = _nonneg_int(storage_offset, "storage offset")
        shape = _int_tuple(size, "size")
        strides = _int_tuple(stride, "stride")
        if len(shape) != len(strides):
            raise CheckpointError(f"tensor size {shape} and stride {strides} have different lengths")
        if storage.raw is None:
            return None
        count = storage.nbytes // dtype.itemsize
        numel = math.prod(shape)
        if numel:
            last = offset + sum((n - 1) * s for n, s in zip(shape, strides, strict=True))
            if last >= count:
                raise CheckpointError(
                    f"tensor of size {shape}, stride {strides}, offset {offset} reads past the end of "
                    f"storage {_short(storage.key)!r} ({count} elements of {dtype.name})"
                )
        out_bytes = numel * dtype.result.itemsize
        if out_bytes > self._budget:
            raise CheckpointError(
                f"tensor of size {shape} would need {out_bytes} bytes, more than this file can plausibly hold"
            )
        self._budget -= out_bytes
        if not numel:
            return np.zeros(shape, dtype=dtype.result)
        stored = dtype.stored.newbyteorder(self._order)
        base = np.frombuffer(storage.raw, dtype=stored, count=count, offset=storage.byte_offset)
        # A dimension of length 1 never steps, so its stride is irrelevant; zeroing it keeps numpy's
        # byte-stride arithmetic in range whatever the file claims.
        byte_strides = tuple(s * dtype.itemsize if n > 1 else 0 for n, s in zip(shape, strides, strict=True))
        view = np.lib.stride_tricks.as_strided(base[offset:], shape=shape, strides=byte_strides, writeable=False)
        # np.array(copy=True) detaches the result from the file buffer and yields native byte order.
        if dtype.name == "bfloat16":
            # bfloat16 is the top half of a float32: shift the 16 stored bits into place.
            out = np.empty(shape, dtype=np.float32)
            bits = out.view(np.uint32)
            np.copyto(bits, view)
            np.left_shift(bits, 16, out=bits)
        else:
            out = np.array(view, dtype=dtype.result, copy=True, order="C")
        if isinstance(metadata, dict):
            # torch stores conj/neg views un-applied plus a flag; apply them so values match the tensor.
            if metadata.get("conj") and out.dtype.kind == "c":
                np.conjugate(out, out=out)
            if metadata.get("neg") and out.dtype.kind in "fc":
                np.negative(out, out=out)
        return out


class _RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler whose globals and persistent ids go through the loader's allow-list."""

    def __init__(
        self,
        file: Any,
        find: Callable[[str, str], object],
        persistent: Callable[[object], object] | None,
    ) -> None:
        # utf-8 like torch.load: Python 2 str objects are decoded rather than left as bytes.
        super().__init__(file, encoding="utf-8")
        self._find = find
        self._persistent = persistent

    def find_class(self, module: str, name: str) -> object:
        return self._find(module, name)

    def persistent_load(self, pid: object) -> object:
        if self._persistent is None:
            raise CheckpointError(f"unexpected persistent id {_short(pid)} in a header pickle")
        return self._persistent(pid)


def _disallowed_global(module: object, name: object) -> str:
    message = f"checkpoint refers to global '{_short(module)}.{_short(name)}', "
    message += "which is not allowed in a weights file"
    if isinstance(module, str) and module.split(".")[0] == "torch":
        message += " (only dense tensors of standard dtypes and plain containers are supported)"
    return message


def _prescan(stream: Any, allowed: Mapping[tuple[str, str], object]) -> None:
    """Walk the opcodes without executing anything.

    pickletools checks every length prefix against the bytes actually present, whereas the C unpickler
    allocates a BINBYTES8 buffer of the claimed size before reading it. Named globals are also checked
    here so a hostile file is refused before any of its REDUCE opcodes run. Memo indices are bounded too:
    the C unpickler grows (and zeroes) its memo table up to the largest index a PUT names.
    """
    for count, (opcode, arg, _pos) in enumerate(pickletools.genops(stream)):
        if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT") and arg > count:
            raise CheckpointError(f"pickle memo index {arg} is out of range (corrupt file?)")
        if opcode.name in _FORBIDDEN_OPCODES:
            raise CheckpointError(f"pickle uses opcode {opcode.name}, which torch.save never writes")
        if opcode.name in ("GLOBAL", "INST"):
            module, _, name = str(arg).partition(" ")
            if (_MODULE_ALIASES.get(module, module), name) not in allowed:
                raise CheckpointError(_disallowed_global(module, name))


def _plain_load(stream: Any, what: str) -> Any:
    """Load a header pickle of the legacy stream: plain data only, no globals, no persistent ids."""

    def no_globals(module: str, name: str) -> object:
        raise CheckpointError(_disallowed_global(module, name))

    start = stream.tell()
    try:
        _prescan(stream, {})
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"could not read the {what} ({_short(exc)})") from None
    stream.seek(start)
    return _RestrictedUnpickler(stream, no_globals, None).load()


# -- zip format ---------------------------------------------------------------------------------------


def _read_zip(path: str, archive_size: int) -> Any:
    with zipfile.ZipFile(path) as zf:
        prefix = find_top(zf) + "/"
        members = MemberReader(zf, archive_size)  # caps the bytes all members together expand to
        byteorder = "little"  # files from torch 1.6-1.9 have no byteorder record; they were little-endian
        if prefix + "byteorder" in set(zf.namelist()):
            raw_order = members.read(prefix + "byteorder", "byte order record")
            byteorder = raw_order.decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise CheckpointError(f"unknown byte order {_short(byteorder)!r} in the archive")
        data_pkl = members.read(prefix + "data.pkl", "pickle")
        cache: dict[str, bytearray] = {}

        def storage_for(pid: tuple[Any, ...]) -> _StorageRef:
            if len(pid) != 5:
                raise CheckpointError(f"malformed storage reference {_short(pid)}")
            _tag, storage_type, key, _location, numel = pid
            if not isinstance(storage_type, _StorageType):
                raise CheckpointError(f"storage reference names {_short(storage_type)}, not a storage class")
            if not isinstance(key, str) or not key or "/" in key or len(key) > 200:
                raise CheckpointError(f"malformed storage key {_short(key)!r}")
            _nonneg_int(numel, "storage size")
            if key not in cache:
                cache[key] = members.read(f"{prefix}data/{key}", "storage")
            raw = cache[key]
            nbytes = numel * storage_type.dtype.itemsize
            if nbytes > len(raw):
                raise CheckpointError(
                    f"storage 'data/{key}' holds {len(raw)} bytes but the pickle claims {numel} elements of "
                    f"{storage_type.dtype.name} ({nbytes} bytes)"
                )
            return _StorageRef(key, storage_type.dtype, raw, 0, nbytes)

        loader = _Loader(storage_for, byteorder, 2 * archive_size + _EXTRA_OUTPUT_BYTES)
        return loader.unpickle(io.BytesIO(data_pkl))


# -- legacy stream format -----------------------------------------------------------------------------


class _LegacyStorages:
    """Storage references of the legacy stream; the data comes after the object pickle, hence two passes."""

    def __init__(self) -> None:
        self.roots: dict[object, tuple[_DType, int]] = {}
        self.data: dict[object, bytes] | None = None  # filled between the passes

    def storage_for(self, pid: tuple[Any, ...]) -> _StorageRef:
        if len(pid) not in (5, 6):
            raise CheckpointError(f"malformed storage reference {_short(pid)}")
        storage_type, root_key, _location, numel = pid[1:5]
        view = pid[5] if len(pid) == 6 else None
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"storage reference names {_short(storage_type)}, not a storage class")
        if not isinstance(root_key, str | int) or isinstance(root_key, bool):
            raise CheckpointError(f"malformed storage key {_short(root_key)!r}")
        _nonneg_int(numel, "storage size")
        dtype = storage_type.dtype
        known = self.roots.setdefault(root_key, (dtype, numel))
        if known[1] * known[0].itemsize != numel * dtype.itemsize:
            raise CheckpointError(f"storage {_short(root_key)!r} is described with two different sizes")
        byte_offset, nbytes = 0, numel * dtype.itemsize
        if view is not None:
            # Storage views of torch < 1.x: (view_key, offset, size) in elements of the root storage.
            if not isinstance(view, tuple) or len(view) != 3:
                raise CheckpointError(f"malformed storage view {_short(view)}")
            view_offset = _nonneg_int(view[1], "storage view offset")
            view_size = _nonneg_int(view[2], "storage view size")
            if view_offset + view_size > numel:
                raise CheckpointError(f"storage view {_short(view)} lies outside its {numel}-element storage")
            byte_offset, nbytes = view_offset * dtype.itemsize, view_size * dtype.itemsize
        raw = None
        if self.data is not None:
            raw = self.data.get(root_key)
            if raw is None:
                raise CheckpointError(f"storage {_short(root_key)!r} is used by a tensor but has no data")
        return _StorageRef(root_key, dtype, raw, byte_offset, nbytes)


def _read_legacy(path: str, file_size: int) -> Any:
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        magic = _plain_load(mm, "magic number")
        if type(magic) is not int or magic != _LEGACY_MAGIC:
            raise CheckpointError("not a torch.save file (wrong magic number)")
        version = _plain_load(mm, "protocol version")
        if version != _LEGACY_PROTOCOL:
            raise CheckpointError(f"unsupported legacy protocol version {_short(version)}")
        sys_info = _plain_load(mm, "sys_info header")
        if not isinstance(sys_info, dict):
            raise CheckpointError("malformed sys_info header")
        little = sys_info.get("little_endian", True)
        if not isinstance(little, bool):
            raise CheckpointError("malformed sys_info header (little_endian)")
        order = "little" if little else "big"

        storages = _LegacyStorages()
        budget = 2 * file_size + _EXTRA_OUTPUT_BYTES
        main_start = mm.tell()
        # Pass 1: run the object pickle without data only to learn each storage's dtype and size (the
        # element counts below cannot be turned into byte counts without them); its result is discarded.
        _Loader(storages.storage_for, order, budget).unpickle(mm)
        keys = _plain_load(mm, "storage key list")
        if not isinstance(keys, list | tuple):
            raise CheckpointError("malformed storage key list")
        data: dict[object, bytes] = {}
        for key in keys:
            if not isinstance(key, str | int) or isinstance(key, bool) or key not in storages.roots:
                raise CheckpointError(f"storage key {_short(key)!r} is listed but no tensor uses it")
            if key in data:
                raise CheckpointError(f"storage key {_short(key)!r} is listed twice")
            dtype, numel = storages.roots[key]
            header = mm.read(8)
            if len(header) != 8:
                raise CheckpointError(f"file is truncated in the header of storage {_short(key)!r}")
            stored_numel = int.from_bytes(header, order, signed=True)
            if stored_numel != numel:
                raise CheckpointError(
                    f"storage {_short(key)!r} holds {stored_numel} elements but the pickle says {numel}"
                )
            start, nbytes = mm.tell(), numel * dtype.itemsize
            # Compare against the bytes really present before copying anything.
            if nbytes > file_size - start:
                raise CheckpointError(
                    f"file is truncated: storage {_short(key)!r} needs {nbytes} bytes, only {file_size - start} remain"
                )
            data[key] = mm[start : start + nbytes]
            mm.seek(start + nbytes)
        missing = [k for k in storages.roots if k not in data]
        if missing:
            raise CheckpointError(f"storage {_short(missing[0])!r} is used by a tensor but its data is missing")
        storages.data = data
        mm.seek(main_start)
        # Pass 2: the same pickle again, now building arrays.
        return _Loader(storages.storage_for, order, budget).unpickle(mm)


# -- public API ---------------------------------------------------------------------------------------


def _read(path: str) -> Any:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CheckpointError("no such file") from None
    except OSError as exc:
        raise CheckpointError(f"cannot access file ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise CheckpointError("is a directory, not a checkpoint file")
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError("is not a regular file")
    if st.st_size == 0:
        raise CheckpointError("file is empty")
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head.startswith(b"PK"):
        return _read_zip(path, st.st_size)
    if head[257:262] == b"ustar":
        raise CheckpointError("tar-based checkpoint from torch < 0.4 is unsupported; re-save it with a newer torch")
    if head[:1] == b"\x80":
        return _read_legacy(path, st.st_size)
    raise CheckpointError("not a PyTorch checkpoint (neither a torch zip archive nor a legacy torch.save file)")


def read_torch_checkpoint(path: str | os.PathLike[str]) -> Any:
    """Read a ``torch.save`` file into dicts/lists/tuples/scalars with numpy arrays in place of tensors.

    Raises CheckpointError (message starts with the path) for anything unreadable, corrupt or unsafe.
    """
    name = os.fsdecode(path)  # TypeError for non-paths: that is a caller bug, not a bad file
    # The full path (not shortened): the file name at its end is the useful part.
    label = name.replace("\n", "\\n")
    try:
        return _read(name)
    except CheckpointError as exc:
        raise CheckpointError(f"{label}: {_short_message(exc)}") from None
    except RecursionError:
        raise CheckpointError(f"{label}: checkpoint is nested too deeply") from None
    except MemoryError:
        raise CheckpointError(f"{label}: ran out of memory reading the checkpoint (corrupt size?)") from None
    except Exception as exc:
        # The boundary: whatever the zip/pickle/numpy layers raise on a bad file becomes a CheckpointError.
        raise CheckpointError(
            f"{label}: corrupt or unreadable checkpoint ({type(exc).__name__}: {_short_message(exc)})"
        ) from None


def _short_message(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ").replace("\r", " ")
    return text if len(text) <= 400 else text[:397] + "..."


def flatten_state_dict(obj: Any, key: str | None = None) -> dict[str, np.ndarray]:
    """Return ``{dotted.name: array}`` from a state dict (``obj[key]`` when key is given).

    Nested mappings are joined with dots; any leaf that is not an array raises CheckpointError, since a
    state dict should hold tensors only.
    """
    if key is not None:
        if not isinstance(obj, Mapping):
            raise CheckpointError(f"checkpoint is a {type(obj).__name__}, not a dict; it has no key {key!r}")
        if key not in obj:
            available = ", ".join(repr(k) for k in list(obj)[:20])
            raise CheckpointError(f"checkpoint has no key {key!r}; available keys: {available}")
        obj = obj[key]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"expected a state dict (a mapping of tensors), got {type(obj).__name__}")
    flat: dict[str, np.ndarray] = {}
    # Explicit stack of iterators rather than recursion (a crafted file can nest mappings arbitrarily
    # deep); depth-first in insertion order so the result keeps the state dict's order.
    stack: list[tuple[str, Any]] = [("", iter(obj.items()))]
    while stack:
        prefix, items = stack[-1]
        item = next(items, None)
        if item is None:
            stack.pop()
            continue
        name, value = item
        if not isinstance(name, str):
            raise CheckpointError(f"state dict key {_short(name)} under {_short(prefix)!r} is not a string")
        full = f"{prefix}.{name}" if prefix else name
        if isinstance(value, Mapping):
            if len(stack) >= 32:
                raise CheckpointError(f"state dict is nested too deeply at {_short(full)!r}")
            stack.append((full, iter(value.items())))
        elif isinstance(value, np.ndarray):
            if full in flat:
                raise CheckpointError(f"state dict has two entries named {full!r}")
            flat[full] = value
        else:
            raise CheckpointError(f"state dict entry {full!r} is a {type(value).__name__}, not a tensor")
    return flat

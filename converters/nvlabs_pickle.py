"""NVlabs' PyTorch network pickles (stylegan2-ada-pytorch, stylegan3) read without torch, torch_utils or dnnlib.

Their training snapshots are plain `pickle.dump`s of `{'training_set_kwargs', 'G', 'D', 'G_ema',
'augment_pipe'}` whose modules are `torch_utils.persistence` classes: each pickles as
`_reconstruct_persistent_obj({'type': 'class', 'version', 'module_src', 'class_name', 'state'})`, where
`module_src` is the Python source of the module defining the class (NVIDIA's loader executes it) and `state`
the module's `__dict__` (`_parameters`, `_buffers`, `_modules`, `_init_kwargs`, plain attributes). Tensors
pickle as `torch._utils._rebuild_tensor_v2(storage, ...)`, and each storage as
`torch.storage._load_from_bytes(bytes)`: a legacy-format `torch.save` stream of that one storage.

Here every global a pickle names is looked up in an allow-list of small pure-Python stand-ins: a persistent
object becomes an inert `Module` tree (class name, init kwargs, attributes, numpy tensors, children) whose
`module_src` is kept as a string and never compiled, executed or imported; an `argparse.Namespace` of training
options beside the networks becomes an inert `PickledNamespace` record (converters/pickle_globals.py); tensors
are rebuilt from the bytes with their sizes checked against the storage and the whole load held to a budget.
The opcodes are walked before anything is built (truncation, memo indices and forbidden opcodes are caught up
front). Anything else -- an unknown global, a malformed value -- is a CheckpointError naming it.
"""

from __future__ import annotations

import dataclasses
import io
import math
import pickle
import pickletools
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from converters.pickle_globals import codecs_encode, namespace_globals, numpy_globals, record_memo
from ifgan_jax.errors import CheckpointError

PERSISTENCE_GLOBAL = ("torch_utils.persistence", "_reconstruct_persistent_obj")
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.save's legacy-format magic number
LEGACY_PROTOCOL = 1001
MAX_NDIM = 64
# Arrays built from one file may total at most twice its size plus this (stride-0 views can expand).
EXTRA_OUTPUT_BYTES = 256 << 20
MAX_DEPTH = 200  # module nesting; NVlabs' networks are < 10 deep
# Opcodes NVIDIA's writers never emit: out-of-band buffers, the extension registry, and (Python 3 writing
# new-style classes) INST / OBJ. Python 2 pickles of old-style classes do use INST / OBJ.
UNUSED_OPCODES = {"NEXT_BUFFER", "READONLY_BUFFER", "EXT1", "EXT2", "EXT4"}
FORBIDDEN_OPCODES = UNUSED_OPCODES | {"INST", "OBJ"}
_STORAGE_DTYPES = {
    "FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2", "BFloat16Storage": "bf16",
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1", "ByteStorage": "u1",
    "BoolStorage": "?",
}


@dataclasses.dataclass
class Module:
    """One pickled persistent module, inert: what NVIDIA's loader would have rebuilt, as data."""

    class_name: str
    init_kwargs: dict[str, Any]
    attrs: dict[str, Any]  # plain attributes (numbers, strings, None, tuples, numpy values)
    tensors: dict[str, np.ndarray]  # _parameters then _buffers (None entries dropped)
    children: dict[str, Module]
    module_src: str = dataclasses.field(default="", repr=False)  # the embedded source: data, never run

    def flat_tensors(self, prefix: str = "") -> dict[str, np.ndarray]:
        """{'mapping.fc0.weight': array, ...} as torch's state_dict would name them."""
        out = {f"{prefix}{name}": value for name, value in self.tensors.items()}
        for name, child in self.children.items():
            out.update(child.flat_tensors(f"{prefix}{name}."))
        return out

    def walk(self, prefix: str = "") -> Iterable[tuple[str, Module]]:
        yield prefix, self
        for name, child in self.children.items():
            yield from child.walk(f"{prefix}.{name}" if prefix else name)


# -- the objects a pickle may build -----------------------------------------------------------------------


class _Frozen:
    """Base of the stand-ins: no attribute can be set on them by BUILD or SETATTR tricks."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise CheckpointError(f"pickle tries to set attribute {str(name)[:40]!r} on a {type(self).__name__}")

    def __setstate__(self, state: Any) -> None:
        raise CheckpointError(f"pickle tries to change the state of a {type(self).__name__}")


class _Persistent(_Frozen):
    """What `_reconstruct_persistent_obj(meta)` returns here: the meta, unexecuted."""

    __slots__ = ("class_name", "module_src", "state")

    def __init__(self, class_name: str, module_src: str, state: dict) -> None:
        for name, value in (("class_name", class_name), ("module_src", module_src), ("state", state)):
            object.__setattr__(self, name, value)


class _Storage(_Frozen):
    """A storage: its flat numpy array (native byte order)."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray) -> None:
        object.__setattr__(self, "array", array)


class _TensorType(_Frozen):
    __slots__ = ()


class _EasyDict(dict):
    """dnnlib.util.EasyDict: a dict subclass; kept as a dict."""


_NUMPY = numpy_globals()


def check_pickle_opcodes(data: bytes | memoryview, what: str = "pickle",
                         forbidden: frozenset[str] | set[str] = FORBIDDEN_OPCODES) -> None:
    """Walk the opcodes without building anything: lengths (against the bytes present), memo indices (the C
    unpickler grows its memo to the largest index named) and `forbidden` opcodes checked."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pickletools warns about bad escapes in damaged protocol-0 strings
            for count, (opcode, arg, _pos) in enumerate(pickletools.genops(io.BytesIO(data))):
                if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT") and arg > count:
                    raise CheckpointError(f"{what}: memo index {arg} is out of range (corrupt file?)")
                if opcode.name in forbidden:
                    raise CheckpointError(f"{what}: opcode {opcode.name} is not used by network pickles")
    except CheckpointError:
        raise
    except Exception as err:  # pickletools raises ValueError on truncation and bad opcodes
        raise CheckpointError(f"{what}: not a readable pickle ({type(err).__name__}: {err})") from None


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, table: dict[tuple[str, str], Any], persistent: Callable | None = None):
        super().__init__(io.BytesIO(data), encoding="latin1")
        self._table = table
        self._persistent = persistent

    def find_class(self, module: str, name: str) -> Any:
        found = self._table.get((module, name))
        if found is None:
            raise CheckpointError(f"pickle refers to {str(module)[:80]}.{str(name)[:80]}, which an NVlabs network "
                                  f"pickle may not use")
        return found

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise CheckpointError("pickle uses persistent ids, which NVlabs network pickles never contain")
        return self._persistent(pid)


class _Loader:
    """State for one file: the output budget and the allow-list bound to it."""

    def __init__(self, file_size: int) -> None:
        self.budget = 2 * file_size + EXTRA_OUTPUT_BYTES
        tensor_type = _TensorType()
        self.table: dict[tuple[str, str], Any] = {
            PERSISTENCE_GLOBAL: self._persistent,
            ("torch._utils", "_rebuild_tensor_v2"): self._rebuild_tensor,
            ("torch._utils", "_rebuild_tensor"): self._rebuild_tensor,
            ("torch._utils", "_rebuild_parameter"): self._rebuild_parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): self._rebuild_parameter,
            ("torch._tensor", "_rebuild_from_type_v2"): self._rebuild_from_type,
            ("torch", "Tensor"): tensor_type,
            ("torch._tensor", "Tensor"): tensor_type,
            ("torch.nn.parameter", "Parameter"): tensor_type,
            ("torch.storage", "_load_from_bytes"): self._load_storage,
            ("collections", "OrderedDict"): OrderedDict,
            ("builtins", "set"): set, ("__builtin__", "set"): set,
            ("builtins", "frozenset"): frozenset,
            ("dnnlib.util", "EasyDict"): _EasyDict,
            ("_codecs", "encode"): codecs_encode,
            **_NUMPY,
            **namespace_globals(),  # options a training script saved beside the networks, as an inert record
        }

    def load(self, data: bytes) -> Any:
        check_pickle_opcodes(data, "pickle")
        with record_memo():
            return _Unpickler(data, self.table).load()

    # -- callables named by the pickle ----------------------------------------------------------------

    @staticmethod
    def _persistent(meta: Any) -> _Persistent:
        if not isinstance(meta, dict) or meta.get("type") != "class":
            raise CheckpointError("persistent object metadata is not a {'type': 'class', ...} dict")
        name, src, state = meta.get("class_name"), meta.get("module_src", ""), meta.get("state")
        if not isinstance(name, str) or not isinstance(src, str) or not isinstance(state, dict):
            raise CheckpointError(f"persistent object {str(name)[:40]!r} has malformed metadata")
        return _Persistent(name, src, state)

    def _load_storage(self, data: Any) -> _Storage:
        """A storage pickled by torch as a legacy `torch.save` stream: five pickles, then count + raw bytes."""
        if not isinstance(data, bytes):
            raise CheckpointError("torch.storage._load_from_bytes called without bytes")
        stream = io.BytesIO(data)
        if _plain_load(stream, data) != LEGACY_MAGIC or _plain_load(stream, data) != LEGACY_PROTOCOL:
            raise CheckpointError("a pickled storage is not a legacy torch.save stream")
        sys_info = _plain_load(stream, data)
        little = sys_info.get("little_endian", True) if isinstance(sys_info, dict) else None
        if not isinstance(little, bool):
            raise CheckpointError("a pickled storage has a malformed sys_info header")
        refs: list[tuple] = []
        storage_globals = {("torch", name): name for name in _STORAGE_DTYPES}
        start = stream.tell()
        check_pickle_opcodes(memoryview(data)[start:], "storage pickle")
        stream.seek(start)
        unpickler = _StreamUnpickler(stream, storage_globals, refs.append)
        unpickler.load()
        keys = _plain_load(stream, data)
        if len(refs) != 1 or not isinstance(keys, list) or len(keys) != 1:
            raise CheckpointError("a pickled storage stream holds other than exactly one storage")
        pid = refs[0]
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage" and pid[1] in _STORAGE_DTYPES
                and isinstance(pid[4], int) and pid[4] >= 0 and pid[2] == keys[0]):
            raise CheckpointError("a pickled storage has a malformed storage reference")
        code, numel = _STORAGE_DTYPES[pid[1]], pid[4]
        stored = np.dtype("u2" if code == "bf16" else code).newbyteorder("<" if little else ">")
        header = stream.read(8)
        if len(header) != 8 or int.from_bytes(header, "little" if little else "big", signed=True) != numel:
            raise CheckpointError("a pickled storage's element count does not match its data")
        raw = stream.read(numel * stored.itemsize + 1)
        if len(raw) != numel * stored.itemsize:
            raise CheckpointError(f"a pickled storage holds {len(raw)} bytes, not {numel} x {stored.itemsize}")
        array = np.frombuffer(raw, dtype=stored)
        if code == "bf16":  # bfloat16 is the top half of a float32
            array = (array.astype(np.uint32) << 16).view(np.float32)
        return _Storage(array.astype(array.dtype.newbyteorder("="), copy=False))

    def _rebuild_tensor(self, storage: Any, offset: Any, size: Any, stride: Any, *rest: Any) -> np.ndarray:
        if not isinstance(storage, _Storage):
            raise CheckpointError(f"a tensor refers to a {type(storage).__name__} where a storage was expected")
        offset = _count(offset, "storage offset")
        shape, strides = _counts(size, "size"), _counts(stride, "stride")
        if len(shape) != len(strides):
            raise CheckpointError(f"tensor size {shape} and stride {strides} differ in length")
        base = storage.array
        numel = math.prod(shape)
        if numel and offset + sum((n - 1) * s for n, s in zip(shape, strides, strict=True)) >= base.size:
            raise CheckpointError(f"a tensor of size {shape}, stride {strides}, offset {offset} reads past the "
                                  f"end of its {base.size}-element storage")
        nbytes = numel * base.itemsize
        if nbytes > self.budget:
            raise CheckpointError(f"a tensor of size {shape} would need {nbytes} bytes, more than this file can hold")
        self.budget -= nbytes
        if not numel:
            return np.zeros(shape, base.dtype)
        byte_strides = tuple(s * base.itemsize if n > 1 else 0 for n, s in zip(shape, strides, strict=True))
        view = np.lib.stride_tricks.as_strided(base[offset:], shape=shape, strides=byte_strides, writeable=False)
        return np.array(view, copy=True, order="C")

    @staticmethod
    def _rebuild_parameter(data: Any, *rest: Any) -> np.ndarray:
        if not isinstance(data, np.ndarray):
            raise CheckpointError(f"a Parameter wraps a {type(data).__name__}, not a tensor")
        return data

    def _rebuild_from_type(self, func: Any, new_type: Any, args: Any, state: Any = None) -> np.ndarray:
        if func != self._rebuild_tensor or not isinstance(new_type, _TensorType) or not isinstance(args, tuple):
            raise CheckpointError("a tensor subclass is rebuilt in a way network pickles never use")
        return self._rebuild_tensor(*args)


class _StreamUnpickler(pickle.Unpickler):
    """The one-storage pickle inside a storage stream: torch's storage classes and persistent ids only."""

    def __init__(self, stream: io.BytesIO, table: dict, on_pid: Callable[[Any], None]) -> None:
        super().__init__(stream, encoding="latin1")
        self._table, self._on_pid = table, on_pid

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._table:
            raise CheckpointError(f"a pickled storage refers to {str(module)[:80]}.{str(name)[:80]}")
        return self._table[(module, name)]

    def persistent_load(self, pid: Any) -> None:
        self._on_pid(pid)


def _plain_load(stream: io.BytesIO, data: bytes) -> Any:
    """One header pickle of a storage stream (`data` is the stream's bytes): plain values only."""
    start = stream.tell()
    check_pickle_opcodes(memoryview(data)[start:], "storage header")
    stream.seek(start)
    return _StreamUnpickler(stream, {}, lambda pid: None).load()


def _count(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 62:
        raise CheckpointError(f"tensor {what} must be a non-negative int64, got {str(value)[:40]}")
    return value


def _counts(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple | list) or len(value) > MAX_NDIM:
        raise CheckpointError(f"tensor {what} must be a tuple of at most {MAX_NDIM} ints")
    return tuple(_count(v, what) for v in value)


# -- persistent objects -> Module trees ---------------------------------------------------------------


def _mapping(value: Any, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CheckpointError(f"{what} is a {type(value).__name__}, not a dict")
    return value


def to_module(obj: Any, depth: int = 0) -> Module:
    """A `_Persistent` -> Module (tensors and children checked); the module source is carried as data."""
    if depth > MAX_DEPTH:
        raise CheckpointError("pickled modules are nested too deeply")
    if not isinstance(obj, _Persistent):
        raise CheckpointError(f"expected a pickled persistent module, got {type(obj).__name__}")
    state = obj.state
    tensors: dict[str, np.ndarray] = {}
    for group in ("_parameters", "_buffers"):
        for name, value in _mapping(state.get(group), f"{obj.class_name}.{group}").items():
            if value is None:
                continue
            if not isinstance(name, str) or not isinstance(value, np.ndarray) or name in tensors:
                raise CheckpointError(f"{obj.class_name}.{group} has a malformed entry {str(name)[:40]!r}")
            tensors[name] = value
    children = {}
    for name, child in _mapping(state.get("_modules"), f"{obj.class_name}._modules").items():
        if child is None:
            continue
        if not isinstance(name, str):
            raise CheckpointError(f"{obj.class_name} has a child module with a non-string name")
        children[name] = to_module(child, depth + 1)
    init_kwargs = _mapping(state.get("_init_kwargs"), f"{obj.class_name} init kwargs")
    attrs = {k: v for k, v in state.items() if isinstance(k, str) and not k.startswith("_") and _is_plain(v)}
    return Module(obj.class_name, dict(init_kwargs), attrs, tensors, children, obj.module_src)


def _is_plain(value: Any, depth: int = 0) -> bool:
    if isinstance(value, bool | int | float | str | type(None) | np.generic):
        return True
    if isinstance(value, tuple | list) and depth < 4:
        return all(_is_plain(v, depth + 1) for v in value)
    return isinstance(value, np.ndarray) and not value.dtype.hasobject


def load_nvlabs_pickle(path: Any, data: bytes) -> Any:
    """Unpickle `data` (the bytes of `path`) with the allow-list; persistent objects come back inert.

    Raises CheckpointError, message starting with the path, for anything unreadable or not allowed.
    """
    try:
        return _Loader(len(data)).load(data)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    except RecursionError:
        raise CheckpointError(f"{path}: pickle is nested too deeply") from None
    except MemoryError:
        raise CheckpointError(f"{path}: ran out of memory reading the pickle (corrupt sizes?)") from None
    except Exception as err:  # the C unpickler and numpy's reconstructors raise many types on bad input
        raise CheckpointError(f"{path}: not a readable NVlabs network pickle ({type(err).__name__}: "
                              f"{str(err)[:200]})") from None


def is_persistent(obj: Any) -> bool:
    return isinstance(obj, _Persistent)


def describe(obj: Any) -> str:
    """A short description of an unpickled value for error messages."""
    if isinstance(obj, _Persistent):
        return f"a pickled {obj.class_name}"
    if isinstance(obj, dict):
        return f"a dict with keys {sorted(map(str, obj))[:8]}"
    return f"a {type(obj).__name__}"

"""dlib's `shape_predictor` file (e.g. shape_predictor_5_face_landmarks.dat) -> `Config` + float32 params.

The format, as dlib's own `serialize.h` and `image_processing/shape_predictor.h` write it (read here with
numpy; nothing in the file is executed):

- every primitive is an integer token: a header byte (bits 0-3: the byte count 1..8, bit 7: the sign of a
  signed type, bits 4-6 zero) then that many little-endian magnitude bytes; a float is two tokens, an int64
  mantissa and an int16 exponent, value = mantissa * 2**exponent (exponents 32000-32002: inf, -inf, nan).
- a `std::vector` is its size (unsigned long) then its items; a `matrix<float,0,1>` is -rows, -cols (or
  rows, cols in the old format) then the values row-major; a `vector<float,2>` is x then y.
- the predictor: int version (1), initial_shape (matrix: x0, y0, x1, y1, ... in the face box normalized to
  [0, 1]), forests (per cascade a vector of trees; a tree is its splits (idx1, idx2: unsigned long, thresh:
  float), a complete binary tree in breadth-first order, then one leaf matrix per leaf), anchor_idx (per
  cascade, per feature pixel: the shape point it hangs from) and deltas (its offset from that point in the
  initial shape's frame).

Accepted are files whose cascades all have the same number of trees, depth and feature pixels (dlib's
trainer writes them so); anything else, a truncated or corrupt file, an index out of range, a non-finite
number or trailing bytes raise CheckpointError naming the file.
"""

from __future__ import annotations

import os

import numpy as np

from ifgan_jax.errors import CheckpointError
from ifgan_jax.models.shape_predictor import Config

Params = dict[str, np.ndarray]

_FLOAT_SPECIAL = 32000  # float_details' is_inf; is_ninf and is_nan follow
_MAX_INT_BYTES = 8


class _Tokens:
    """The file as a flat sequence of integer tokens, read front to back by a cursor."""

    def __init__(self, data: bytes):
        starts, end = _token_starts(data)
        if end != len(data):
            raise CheckpointError(f"the file is truncated: its last value needs {end - len(data)} more bytes")
        raw = np.frombuffer(data, np.uint8)
        self.headers = raw[starts]
        sizes = (self.headers & 0x0F).astype(np.int64)
        invalid = ((self.headers & 0x70) != 0) | (sizes == 0) | (sizes > _MAX_INT_BYTES)
        if np.any(invalid):
            bad = int(np.flatnonzero(invalid)[0])
            raise CheckpointError(f"byte {int(starts[bad])}: invalid integer header 0x{int(self.headers[bad]):02x} "
                                  "(corrupt file, or dlib's old text format for floats, which is not read)")
        # Each token's 8 bytes after its header as one little-endian uint64, masked to the token's size.
        padded = np.concatenate([raw, np.zeros(_MAX_INT_BYTES, np.uint8)])
        windows = np.lib.stride_tricks.as_strided(padded, (len(raw), _MAX_INT_BYTES), (1, 1), writeable=False)
        magnitude = np.ascontiguousarray(windows[starts + 1]).view("<u8")[:, 0]
        keep = np.where(sizes >= _MAX_INT_BYTES, np.uint64(2**64 - 1),
                        (np.uint64(1) << (8 * np.minimum(sizes, 7)).astype(np.uint64)) - np.uint64(1))
        magnitude = magnitude & keep
        self.negative = (self.headers & 0x80) != 0
        self.sizes = sizes
        if np.any(magnitude[self.negative] > np.uint64(2**63)):
            raise CheckpointError("a signed integer is out of the int64 range")
        self.magnitude = magnitude
        self.offsets = starts
        self.pos = 0

    def __len__(self) -> int:
        return len(self.sizes)

    def take(self, count: int, what: str) -> slice:
        if self.pos + count > len(self):
            raise CheckpointError(f"the file ends inside {what}")
        span = slice(self.pos, self.pos + count)
        self.pos += count
        return span

    def unsigned(self, count: int, what: str, max_value: int) -> np.ndarray:
        """`count` unsigned longs, each <= max_value, as int64."""
        span = self.take(count, what)
        if np.any(self.negative[span]):
            raise CheckpointError(f"{what}: a negative value where an unsigned one belongs")
        values = self.magnitude[span]
        if np.any(values > np.uint64(max_value)):
            raise CheckpointError(f"{what}: value {int(values.max())} is out of range (at most {max_value})")
        return values.astype(np.int64)

    def signed(self, count: int, what: str, max_bytes: int = _MAX_INT_BYTES) -> np.ndarray:
        """`count` signed integers of at most `max_bytes` bytes, as int64."""
        span = self.take(count, what)
        if np.any(self.sizes[span] > max_bytes):
            raise CheckpointError(f"{what}: an integer wider than its {max_bytes}-byte type")
        values = self.magnitude[span].astype(np.int64)  # 2**63 wraps to -2**63, its only valid reading
        return np.where(self.negative[span], -values, values)

    def floats(self, count: int, what: str) -> np.ndarray:
        """`count` serialized floats as float32, as dlib reads them into a float (ldexp(float(mantissa), exp))."""
        span = self.take(2 * count, what)
        at = np.arange(span.start, span.stop, 2)
        return _floats_at(self, at, at + 1, what)

    def column(self, what: str, rows: int | None = None) -> np.ndarray:
        """A serialized matrix<float,0,1> (rows given: checked)."""
        nr, nc = (abs(int(v)) for v in self.signed(2, f"{what} (matrix size)"))
        if nc != 1 or (rows is not None and nr != rows):
            raise CheckpointError(f"{what}: a {nr} x {nc} matrix, expected {rows if rows is not None else 'n'} x 1")
        return self.floats(nr, what)


def _token_starts(data: bytes) -> tuple[np.ndarray, int]:
    """Offsets of every token's header byte, and where the last token ends (== len(data) when complete)."""
    # A token's length is in its header, so the boundaries are found by one pass (about 0.5 s for the
    # 9 MB 5-point model); everything after is vectorized.
    starts: list[int] = []
    append = starts.append
    pos, n = 0, len(data)
    while pos < n:
        append(pos)
        pos += 1 + (data[pos] & 0x0F)
    return np.asarray(starts, np.int64), pos


def load_shape_predictor(path: str | os.PathLike) -> tuple[Config, Params]:
    """Read a dlib shape_predictor file into (config, params); CheckpointError naming the file if refused."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as err:
        raise CheckpointError(f"cannot read shape predictor {path}: {err.strerror or err}") from None
    try:
        return parse_shape_predictor(data)
    except CheckpointError as err:
        raise CheckpointError(f"{path} is not a valid dlib shape_predictor file: {err}") from None


def parse_shape_predictor(data: bytes) -> tuple[Config, Params]:
    """The bytes of a shape_predictor file -> (config, params) (see the module docstring for the format)."""
    if not data:
        raise CheckpointError("the file is empty")
    tokens = _Tokens(data)
    version = int(tokens.signed(1, "the version", max_bytes=4)[0])
    if version != 1:
        raise CheckpointError(f"unknown shape_predictor version {version} (dlib writes 1)")
    initial = tokens.column("the initial shape")
    if initial.size == 0 or initial.size % 2:
        raise CheckpointError(f"the initial shape has {initial.size} values, expected an even, positive number")
    num_parts = initial.size // 2

    num_cascades = int(tokens.unsigned(1, "the number of cascades", 10**6)[0])
    if num_cascades == 0:
        raise CheckpointError("the predictor has no cascades")
    forests = [_read_forest(tokens, c, num_parts) for c in range(num_cascades)]
    num_trees, num_splits = forests[0][0].shape[:2]
    for c, forest in enumerate(forests):
        if forest[0].shape[:2] != (num_trees, num_splits):
            raise CheckpointError(f"cascade {c} has {forest[0].shape[0]} trees of {forest[0].shape[1]} splits, "
                                  f"cascade 0 {num_trees} of {num_splits}: uneven cascades are not supported")

    count = int(tokens.unsigned(1, "the anchor lists' count", 10**6)[0])
    if count != num_cascades:
        raise CheckpointError(f"{count} anchor lists for {num_cascades} cascades")
    anchors = []
    for c in range(num_cascades):
        num_features = int(tokens.unsigned(1, f"cascade {c}'s number of feature pixels", 10**7)[0])
        anchors.append(tokens.unsigned(num_features, f"cascade {c}'s anchor indices", num_parts - 1))
    num_features = len(anchors[0])
    if num_features == 0 or any(len(a) != num_features for a in anchors):
        raise CheckpointError(f"feature pixels per cascade {[len(a) for a in anchors]}: expected the same "
                              "positive number in every cascade")
    count = int(tokens.unsigned(1, "the delta lists' count", 10**6)[0])
    if count != num_cascades:
        raise CheckpointError(f"{count} delta lists for {num_cascades} cascades")
    deltas = []
    for c in range(num_cascades):
        n = int(tokens.unsigned(1, f"cascade {c}'s number of deltas", 10**7)[0])
        if n != num_features:
            raise CheckpointError(f"cascade {c} has {n} pixel deltas for {num_features} anchors")
        deltas.append(tokens.floats(2 * n, f"cascade {c}'s pixel deltas").reshape(n, 2))
    if tokens.pos != len(tokens):
        extra = len(data) - int(tokens.offsets[tokens.pos])
        raise CheckpointError(f"{extra} unexpected bytes after the predictor")

    for c, (splits, _, _, _) in enumerate(forests):
        if splits.size and splits.max() >= num_features:
            raise CheckpointError(f"cascade {c}: a split reads feature pixel {int(splits.max())} of "
                                  f"{num_features}")
    config = Config(num_parts=num_parts, num_cascades=num_cascades, num_trees=num_trees,
                    tree_depth=int(num_splits + 1).bit_length() - 1, num_features=num_features)
    params = {
        "initial_shape": initial.reshape(num_parts, 2),
        "anchor_idx": np.stack(anchors).astype(np.int32),
        "deltas": np.stack(deltas),
        "split_idx1": np.stack([f[0][..., 0] for f in forests]).astype(np.int32),
        "split_idx2": np.stack([f[0][..., 1] for f in forests]).astype(np.int32),
        "split_thresh": np.stack([f[1] for f in forests]),
        "leaf_values": np.stack([f[2] for f in forests]),
    }
    check_params(config, params)
    return config, params


def _read_forest(tokens: _Tokens, cascade: int, num_parts: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """One cascade's trees: (split indices (T, S, 2), thresholds (T, S), leaves (T, L, 2 * parts), T).

    Every tree must be complete (L = S + 1 leaves, a power of two) and the same shape as the first; the
    trees' tokens are then at fixed strides, so the whole forest is read with a few array operations.
    """
    what = f"cascade {cascade}"
    num_trees = int(tokens.unsigned(1, f"{what}'s number of trees", 10**7)[0])
    if num_trees == 0:
        raise CheckpointError(f"{what} has no trees")
    start = tokens.pos
    num_splits = int(tokens.unsigned(1, f"{what}, tree 0's number of splits", 2**20)[0])
    num_leaves = num_splits + 1
    if num_leaves & num_splits:
        raise CheckpointError(f"{what}, tree 0: {num_splits} splits do not make a complete binary tree")
    tokens.pos = start
    dim = 2 * num_parts
    split_tokens, leaf_tokens = 4 * num_splits, num_leaves * (2 + 2 * dim)
    stride = 1 + split_tokens + 1 + leaf_tokens
    span = tokens.take(num_trees * stride, f"{what}'s trees")
    index = span.start + stride * np.arange(num_trees)[:, None]

    def _uniform(offset: int, expected: int, name: str) -> None:
        at = index[:, 0] + offset
        wrong = tokens.negative[at] | (tokens.magnitude[at] != np.uint64(expected))
        if np.any(wrong):
            raise CheckpointError(f"{what}, tree {int(np.flatnonzero(wrong)[0])}: {name} differs from tree 0's "
                                  f"{expected}")

    _uniform(0, num_splits, "the number of splits")
    _uniform(1 + split_tokens, num_leaves, "the number of leaves")
    split_at = index + 1 + np.arange(split_tokens)[None, :]  # (T, 4S): idx1, idx2, mantissa, exponent
    split_at = split_at.reshape(num_trees, num_splits, 4)
    idx_at = split_at[..., :2].reshape(-1)
    if np.any(tokens.negative[idx_at]) or np.any(tokens.magnitude[idx_at] >= np.uint64(2**31)):
        raise CheckpointError(f"{what}: a split's pixel index is negative or out of range")
    indices = tokens.magnitude[split_at[..., :2]].astype(np.int64)
    thresh = _floats_at(tokens, split_at[..., 2], split_at[..., 3], f"{what}'s split thresholds")
    leaf_at = index + 2 + split_tokens + np.arange(leaf_tokens)[None, :]
    leaf_at = leaf_at.reshape(num_trees, num_leaves, 2 + 2 * dim)
    sizes = tokens.magnitude[leaf_at[..., :2]]  # -rows, -cols (or rows, cols): the magnitudes are checked
    if np.any((sizes[..., 0] != np.uint64(dim)) | (sizes[..., 1] != np.uint64(1))):
        raise CheckpointError(f"{what}: a leaf is not a {dim} x 1 matrix")
    values_at = leaf_at[..., 2:].reshape(num_trees, num_leaves, dim, 2)
    leaves = _floats_at(tokens, values_at[..., 0], values_at[..., 1], f"{what}'s leaf values")
    return indices, thresh, leaves, num_trees


def _floats_at(tokens: _Tokens, mant_at: np.ndarray, exp_at: np.ndarray, what: str) -> np.ndarray:
    """Floats whose mantissa and exponent tokens are at the given token positions (any shape)."""
    if np.any(tokens.sizes[exp_at] > 2) or np.any(tokens.magnitude[exp_at] > np.uint64(2**15)):
        raise CheckpointError(f"{what}: a float exponent outside int16")
    if np.any(tokens.magnitude[mant_at] >= np.uint64(2**63)):
        raise CheckpointError(f"{what}: a float mantissa outside int64")
    mantissa = tokens.magnitude[mant_at].astype(np.int64)
    mantissa = np.where(tokens.negative[mant_at], -mantissa, mantissa)
    exponent = tokens.magnitude[exp_at].astype(np.int64)
    exponent = np.where(tokens.negative[exp_at], -exponent, exponent)
    if np.any(exponent >= _FLOAT_SPECIAL):
        raise CheckpointError(f"{what}: a non-finite number (inf or nan)")
    with np.errstate(over="ignore"):
        values = np.ldexp(mantissa.astype(np.float32), exponent.astype(np.int32))
    if not np.all(np.isfinite(values)):
        raise CheckpointError(f"{what}: a number overflows float32")
    return values.astype(np.float32)


def check_params(config: Config, params: Params) -> None:
    """Shapes, dtypes and index ranges of a params dict against its config (CheckpointError if wrong)."""
    c, t, f, p = config.num_cascades, config.num_trees, config.num_features, config.num_parts
    s, leaves = config.num_splits, config.num_leaves
    expected = {
        "initial_shape": ((p, 2), np.float32),
        "anchor_idx": ((c, f), np.int32),
        "deltas": ((c, f, 2), np.float32),
        "split_idx1": ((c, t, s), np.int32),
        "split_idx2": ((c, t, s), np.int32),
        "split_thresh": ((c, t, s), np.float32),
        "leaf_values": ((c, t, leaves, 2 * p), np.float32),
    }
    if set(params) != set(expected):
        raise CheckpointError(f"params have keys {sorted(params)}, expected {sorted(expected)}")
    for key, (shape, dtype) in expected.items():
        value = params[key]
        if value.shape != shape or value.dtype != dtype:
            raise CheckpointError(f"{key}: {value.dtype}{value.shape}, expected {np.dtype(dtype)}{shape}")
    for key, bound in (("anchor_idx", p), ("split_idx1", f), ("split_idx2", f)):
        if params[key].size and (params[key].min() < 0 or params[key].max() >= bound):
            raise CheckpointError(f"{key} has an index outside [0, {bound})")

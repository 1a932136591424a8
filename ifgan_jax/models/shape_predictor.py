"""dlib's shape predictor (Kazemi & Sullivan's ensemble of regression trees) as a pure, jittable JAX function.

`predict(config, params, gray, boxes)` runs the cascade on a batch, for each image exactly as dlib's
`shape_predictor::operator()` does:

- the shape lives in the face box normalized to [0, 1] (box (left, top, right, bottom), inclusive, maps
  (0, 0) to (left, top) and (1, 1) to (right, bottom)); it starts at the initial (mean) shape.
- per cascade: the similarity transform from the initial shape to the current one (Umeyama's least
  squares; in 2-D closed form, the rotation-scale [[a, -b], [b, a]]); each feature pixel is its anchor point
  of the current shape plus its delta mapped by that transform, taken to image pixels and rounded as dlib
  rounds (floor(x + 0.5)); its value is the image's intensity there, 0 outside the image.
- each tree walks from its root: left when value[idx1] - value[idx2] > thresh, else right; the leaves'
  shape deltas are added to the shape (in tree order, one float32 add at a time, as dlib does).
- the result is the final shape in image pixels (float; dlib rounds it to integers).

Intensities are dlib's `get_pixel_intensity` of an RGB pixel: (r + g + b) / 3 in integer arithmetic
(`gray_from_rgb`). dlib computes the two transforms in double and the shape in float; here everything is
float32, with the pixel rounding done exactly as in double (`_pixel_index`), the transform's coefficients
from exact products and two-float sums (`_similarity`), every product rounded before it is added as dlib's
compiled code does (`_rounded`), and without matrix products (which GPUs would run in TF32).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Config:
    """The cascade's sizes; the params are arrays of these shapes (converters/dlib_shape_predictor.py)."""

    num_parts: int  # landmarks
    num_cascades: int
    num_trees: int  # per cascade
    tree_depth: int  # complete binary trees: 2**depth - 1 splits, 2**depth leaves
    num_features: int  # feature pixels per cascade

    @property
    def num_splits(self) -> int:
        return 2**self.tree_depth - 1

    @property
    def num_leaves(self) -> int:
        return 2**self.tree_depth


def gray_from_rgb(rgb: jax.Array) -> jax.Array:
    """Byte-valued float RGB (..., 3) -> dlib's intensity, (r + g + b) / 3 in integer division.

    The half added keeps every quotient at least 1/6 from an integer, so even an approximate division
    floors right."""
    return jnp.floor((jnp.sum(rgb, axis=-1) + 0.5) / 3.0)


def predict(config: Config, params: dict[str, Any], gray: jax.Array, boxes: jax.Array) -> jax.Array:
    """Landmarks (N, parts, 2) as (x, y) image pixels for gray (N, H, W) byte values and boxes (N, 4).

    `boxes` are dlib rectangles (left, top, right, bottom), inclusive, in pixels of each image. The batch is
    the last axis inside (feature values (F, N), decisions (T, S, N)): every tree step is then a vector op
    over the images, 1.6x faster on XLA:CPU than vmapping the one-image cascade. Pure jnp, so vmappable too.
    """
    n, height, width = gray.shape
    flat = gray.reshape(n, -1)
    boxes = jnp.asarray(boxes, jnp.float32)
    origin, size = boxes[:, None, :2], boxes[:, None, 2:] - boxes[:, None, :2]  # (N, 1, 2)
    initial = params["initial_shape"]
    first_leaf = (jnp.arange(config.num_trees) * config.num_leaves)[:, None]

    def cascade(shape: jax.Array, stage: dict[str, jax.Array]) -> tuple[jax.Array, None]:
        a, b = _similarity(params["similarity"], shape)  # (N, 1) each
        dx, dy = stage["deltas"][None, :, 0], stage["deltas"][None, :, 1]
        anchor = shape[:, stage["anchor_idx"]]  # (N, F, 2)
        # dlib: matrix<float,2,2> * vector<float,2> (row by row, each product rounded), plus the anchor point.
        x = (_rounded(a * dx) + _rounded((-b) * dy)) + anchor[..., 0]
        y = (_rounded(b * dx) + _rounded(a * dy)) + anchor[..., 1]
        px = _pixel_index(x, size[..., 0], origin[..., 0])
        py = _pixel_index(y, size[..., 1], origin[..., 1])
        inside = (px >= 0) & (px < width) & (py >= 0) & (py < height)
        index = jnp.clip(py, 0, height - 1) * width + jnp.clip(px, 0, width - 1)
        values = jnp.where(inside, jnp.take_along_axis(flat, index, axis=1), 0.0).T  # (F, N)
        # Every split's decision, then each tree's path through its levels by selection: no gathers that
        # depend on the image, which XLA:CPU runs slowly.
        left = values[stage["split_idx1"]] - values[stage["split_idx2"]] > stage["split_thresh"][..., None]
        path = jnp.zeros((config.num_trees, n), jnp.int32)  # the node's index within its level
        for depth in range(config.tree_depth):
            level = left[:, 2**depth - 1 : 2 ** (depth + 1) - 1]  # (T, 2**depth, N)
            go_left = level[:, 0]
            for j in range(1, 2**depth):
                go_left = jnp.where(path == j, level[:, j], go_left)
            path = 2 * path + jnp.where(go_left, 0, 1)
        leaves = stage["leaf_values"].reshape(-1, stage["leaf_values"].shape[-1])
        deltas = leaves[first_leaf + path]  # (T, N, 2 * parts)
        flat_shape = shape.reshape(n, -1)
        for t in range(config.num_trees):  # dlib's order of float32 additions; XLA fuses the chain
            flat_shape = flat_shape + deltas[t]
        return flat_shape.reshape(shape.shape), None

    stages = {key: params[key] for key in ("anchor_idx", "deltas", "split_idx1", "split_idx2", "split_thresh",
                                            "leaf_values")}
    start = jnp.broadcast_to(initial, (n, *initial.shape))
    shape, _ = jax.lax.scan(cascade, start, stages)
    return origin + size * shape


def prepare(params: dict[str, Any]) -> dict[str, Any]:
    """The converter's params plus "similarity": (2, 2, parts, 2) float32 weights, [hi, lo] x [a, b], such
    that a = sum(w_a * shape) and b = sum(w_b * shape) over the points' (x, y) (see `_similarity`)."""
    initial = np.asarray(params["initial_shape"], np.float64)
    centered = initial - initial.mean(axis=0)
    weights = np.stack([centered, np.stack([-centered[:, 1], centered[:, 0]], axis=1)]) / np.sum(centered**2)
    hi = weights.astype(np.float32)
    lo = (weights - hi).astype(np.float32)
    return {**params, "similarity": np.stack([hi, lo])}


def _similarity(weights: jax.Array, to: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(a, b), each (N, 1), of the least-squares similarity [[a, -b], [b, a]] (plus a translation) from the
    initial shape to each shape `to` (N, P, 2), rounded to float32 from (nearly) exact values as dlib does.

    Umeyama's solution, which dlib's find_similarity_transform computes in double with an SVD, is in 2-D
    a = sum(f . t) / sum |f|^2 and b = sum(f x t) / sum |f|^2 over the centred points f of the initial shape
    and t of `to`; as the f sum to zero, t need not be centred: a and b are dot products of `to` with fixed
    weights (`prepare`, in float64 as a float32 pair). Each product is made exact (Dekker's two-product) and
    summed in two floats, so the float32 result is dlib's (a float32 sum flipped pixels on 2 of 6,000 faces).
    """
    flat = to.reshape(to.shape[0], -1)  # x0, y0, x1, y1, ...
    out = []
    for k in range(2):
        w_hi, w_lo = weights[0, k].reshape(-1), weights[1, k].reshape(-1)
        total, carry = jnp.zeros(flat.shape[0], jnp.float32), jnp.zeros(flat.shape[0], jnp.float32)
        for i in range(flat.shape[1]):
            product, error = _two_product(w_hi[i], flat[:, i])
            total, rounding = _two_sum(total, product)
            carry = carry + (rounding + error + w_lo[i] * flat[:, i])
        out.append((total + carry)[:, None])
    return out[0], out[1]


def _rounded(product: jax.Array) -> jax.Array:
    """A product rounded to float32 before it is added: XLA (LLVM) contracts a * b + c into one fused
    multiply-add, rounding once where dlib rounds twice (measured on XLA:CPU: 18% of such sums differ in the
    last bit). A select on the product (NaN never occurs here) is opaque to that contraction."""
    return jnp.where(jnp.isnan(product), jnp.float32(0), product)


def _split(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """x = hi + lo exactly, hi its sign, exponent and 11 leading mantissa bits, lo the rest (12 bits)."""
    bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
    hi = jax.lax.bitcast_convert_type(bits & jnp.uint32(0xFFFFF000), jnp.float32)
    return hi, x - hi


def _two_product(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(p, e) with p = fl(a * b) and a * b = p + e exactly (Dekker; all partial products exact)."""
    product = _rounded(a * b)
    a_hi, a_lo = _split(a)
    b_hi, b_lo = _split(b)
    error = (((a_hi * b_hi - product) + a_hi * b_lo) + a_lo * b_hi) + a_lo * b_lo
    return product, error


def _two_sum(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(s, e) with s = fl(a + b) and a + b = s + e exactly (Knuth)."""
    total = a + b
    b_part = total - a
    return total, (a - (total - b_part)) + (b - b_part)


def _pixel_index(x: jax.Array, scale: jax.Array, offset: jax.Array) -> jax.Array:
    """floor(offset + scale * x + 0.5) as int32, exactly as dlib computes it in double.

    `x` is a float32 normalized coordinate, `scale` and `offset` the box's integer size and corner. In
    float32 the product would round and flip a pixel where the exact value is within a rounding error of a
    pixel edge (measured: 8 of 6,000 faces changed a point that way). Here scale * x is split into a
    rounded product and its exact error (x cut into two 12-bit halves by masking its bits, each half times a
    box size under 4096 exact), the floor is taken of the rounded sum and corrected by one where the exact
    residual says so. Only adds, multiplies and compares on exact values: FMA contraction cannot change it.
    Boxes of 4096 px and more are rounded in plain float32.
    """
    x_hi, x_lo = _split(x)
    p_hi, p_lo = scale * x_hi, scale * x_lo  # both exact for scale < 4096
    product = p_hi + p_lo
    error = p_lo - (product - p_hi)  # Fast2Sum: scale * x == product + error exactly
    half = offset + 0.5  # exact: an integer plus a half
    guess = jnp.floor(product + half)
    # scale * x + half - guess = (product - (guess - half)) + error; the first difference is exact (Sterbenz)
    # whenever it is small, which is when the sign matters.
    below = product - (guess - half) < -error  # the exact value is under `guess`
    above = product - (guess + 1.0 - half) >= -error  # it is at or over guess + 1
    index = guess - below.astype(jnp.float32) + above.astype(jnp.float32)
    return index.astype(jnp.int32)

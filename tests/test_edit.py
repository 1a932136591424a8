"""edit_codes: InterFaceGAN's linear_interpolate semantics, batched over samples x boundaries x steps."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import needs_dcgan

from ifgan_jax.cli import main
from ifgan_jax.edit import edit_codes, interpolation_distances, linear_interpolate
from ifgan_jax.errors import InputError


def unit_rows(rng: np.random.Generator, b: int, d: int) -> np.ndarray:
    x = rng.standard_normal((b, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_absolute_sets_signed_distance_exactly():
    rng = np.random.default_rng(0)
    codes = rng.standard_normal((5, 16)).astype(np.float32)
    bounds = unit_rows(rng, 3, 16)
    dist = np.array([-3.0, -0.5, 0.0, 2.0], np.float32)
    out = np.asarray(edit_codes(codes, bounds, dist, mode="absolute"))
    assert out.shape == (5, 3, 4, 16) and out.dtype == np.float32
    proj = np.einsum("nbsd,bd->nbs", out, bounds)
    np.testing.assert_allclose(proj, np.broadcast_to(dist, proj.shape), atol=1e-5)
    # Only the component along n changes.
    for b in range(3):
        delta = out[:, b] - codes[:, None]
        resid = delta - np.einsum("nsd,d->ns", delta, bounds[b])[..., None] * bounds[b]
        assert np.abs(resid).max() < 1e-5


def test_relative_and_unnormalised_boundaries():
    rng = np.random.default_rng(1)
    codes = rng.standard_normal((4, 8)).astype(np.float32)
    n = unit_rows(rng, 2, 8)
    dist = interpolation_distances(-1.0, 1.0, 3)
    out = np.asarray(edit_codes(codes, 5.0 * n, dist, mode="relative"))  # boundaries are scaled to unit length
    want = codes[:, None, None, :] + dist[None, None, :, None] * n[None, :, None, :]
    np.testing.assert_allclose(out, want, atol=1e-6)


def test_single_boundary_shapes_and_jit():
    rng = np.random.default_rng(2)
    codes = jnp.asarray(rng.standard_normal((6, 8)), jnp.float32)
    n = unit_rows(rng, 1, 8)
    assert edit_codes(codes, n[0], [1.0, 2.0]).shape == (6, 1, 2, 8)  # (d,) boundary
    assert edit_codes(codes, n, 1.5).shape == (6, 1, 1, 8)  # scalar distance

    @jax.jit
    def f(c, b, d):
        return edit_codes(c, b, d)

    got = f(codes, jnp.asarray(n), jnp.linspace(-3, 3, 4))
    np.testing.assert_allclose(np.asarray(got), np.asarray(edit_codes(codes, n, np.linspace(-3, 3, 4))), atol=1e-6)


def test_wplus_shared_boundary_is_relative_in_both_modes():
    rng = np.random.default_rng(3)
    codes = rng.standard_normal((3, 4, 8)).astype(np.float32)
    n = unit_rows(rng, 2, 8)
    dist = np.array([-2.0, 1.0], np.float32)
    out_abs = np.asarray(edit_codes(codes, n, dist, mode="absolute"))
    out_rel = np.asarray(edit_codes(codes, n, dist, mode="relative"))
    assert out_abs.shape == (3, 2, 2, 4, 8)
    want = codes[:, None, None] + dist[None, None, :, None, None] * n[None, :, None, None, :]
    np.testing.assert_allclose(out_abs, want, atol=1e-6)
    np.testing.assert_allclose(out_rel, want, atol=1e-6)


def test_wplus_layers_and_strength():
    rng = np.random.default_rng(4)
    codes = rng.standard_normal((2, 5, 8)).astype(np.float32)
    n = unit_rows(rng, 1, 8)
    strength = np.array([1.0, 0.7, 0.7, 1.0, 1.0], np.float32)
    out = np.asarray(edit_codes(codes, n, [2.0], layers=(1, 2, -1), layer_strength=strength))[:, 0, 0]
    delta = out - codes
    np.testing.assert_allclose(delta[:, [0, 3]], 0.0, atol=1e-7)  # untouched layers
    np.testing.assert_allclose(delta[:, 1], np.broadcast_to(2.0 * 0.7 * n[0], (2, 8)), atol=1e-6)
    np.testing.assert_allclose(delta[:, 4], np.broadcast_to(2.0 * n[0], (2, 8)), atol=1e-6)
    # Under jit with static layers and a traced strength vector.
    fn = jax.jit(lambda c, s: edit_codes(c, n, jnp.array([2.0]), layers=(1, 2, 4), layer_strength=s))
    np.testing.assert_allclose(np.asarray(fn(codes, strength))[:, 0, 0], out, atol=1e-6)


def test_wplus_flattened_boundary_absolute():
    rng = np.random.default_rng(5)
    codes = rng.standard_normal((3, 2, 4)).astype(np.float32)
    n = unit_rows(rng, 1, 8)  # trained on flattened (L * d) codes
    out = np.asarray(edit_codes(codes, n, [-1.0, 0.5], mode="absolute"))
    assert out.shape == (3, 1, 2, 2, 4)
    proj = np.einsum("nsk,k->ns", out[:, 0].reshape(3, 2, 8), n[0])
    np.testing.assert_allclose(proj, np.broadcast_to([-1.0, 0.5], (3, 2)), atol=1e-5)


def test_matches_interfacegan_linear_interpolate(manipulator):
    rng = np.random.default_rng(6)
    n = unit_rows(rng, 1, 16)
    code = rng.standard_normal((1, 16)).astype(np.float32)
    want = manipulator.linear_interpolate(code, n, -3.0, 3.0, 10)
    np.testing.assert_allclose(linear_interpolate(code, n, -3.0, 3.0, 10), want, atol=1e-5)
    wp = rng.standard_normal((1, 3, 16)).astype(np.float32)
    want = manipulator.linear_interpolate(wp, n, -2.0, 1.0, 4)
    got = linear_interpolate(wp, n, -2.0, 1.0, 4)
    assert got.shape == want.shape == (4, 3, 16)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_edit_errors():
    rng = np.random.default_rng(7)
    codes = rng.standard_normal((2, 8)).astype(np.float32)
    n = unit_rows(rng, 1, 8)
    with pytest.raises(InputError, match="dim 7"):
        edit_codes(codes, n[:, :7], [1.0])
    with pytest.raises(InputError, match="all zeros"):
        edit_codes(codes, np.zeros((1, 8)), [1.0])
    bad = codes.copy()
    bad[1, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        edit_codes(bad, n, [1.0])
    with pytest.raises(InputError, match="mode"):
        edit_codes(codes, n, [1.0], mode="sideways")
    with pytest.raises(InputError, match="W\\+ codes"):
        edit_codes(codes, n, [1.0], layers=(0,))
    wp = rng.standard_normal((2, 3, 8)).astype(np.float32)
    with pytest.raises(InputError, match="layers"):
        edit_codes(wp, n, [1.0], layers=(3,))
    with pytest.raises(InputError, match="layer_strength"):
        edit_codes(wp, n, [1.0], layer_strength=np.ones(4))
    with pytest.raises(InputError, match="shape"):
        edit_codes(codes[0], n, [1.0])
    with pytest.raises(InputError, match="distances"):
        edit_codes(codes, n, np.ones((2, 2)))
    with pytest.raises(InputError, match="steps"):
        interpolation_distances(steps=0)


@needs_dcgan
@pytest.mark.parametrize(("flags", "message"), [
    (["-n", "0"], "-n must be >= 1"),
    (["-n", "-2"], "-n must be >= 1"),
    (["-n", "2", "--seed", "-1"], "--seed must be in"),
    (["-n", "2", "--steps", "100000000"], "--steps must be in"),
    (["-i", "EMPTY"], "no codes to edit"),
])
def test_edit_cli_bad_numbers_exit_2_and_write_nothing(tmp_path, capsys, flags, message):
    """One line and exit code 2 before anything is written (they used to write empty output or run out of memory)."""
    boundary = tmp_path / "b.npy"
    np.save(boundary, unit_rows(np.random.default_rng(0), 1, 100).astype(np.float32))
    np.save(tmp_path / "empty.npy", np.zeros((0, 100), np.float32))
    flags = [str(tmp_path / "empty.npy") if f == "EMPTY" else f for f in flags]
    out = tmp_path / "out"
    assert main(["edit", "-b", str(boundary), "-o", str(out), "--quiet", *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not out.exists() or not any(out.iterdir())

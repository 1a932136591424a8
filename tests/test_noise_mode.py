"""The noise mode is a per-call choice of `synthesize` (issue 21, defect 2), and a `--noise-mode` flag.

One converted StyleGAN2 renders the same W+ codes with its stored noise, with none and with fresh draws;
random noise is keyed per image, so an image's noise does not depend on its batch mates.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import FIXTURES

import ifgan_jax
from ifgan_jax import latents
from ifgan_jax.cli import main
from ifgan_jax.errors import InputError


@pytest.fixture(scope="module")
def sg2(tmp_path_factory):
    out = tmp_path_factory.mktemp("sg2") / "m"
    assert main(["convert", "--weights", str(FIXTURES / "stylegan2_ada_32_map2.pkl"), "-o", str(out)]) == 0
    G = ifgan_jax.load_generator(out)
    return out, G, G.codes_from_z(G.sample_latents(1, 0, 4), "wp")


def test_modes_per_call(sg2):
    _, G, wp = sg2
    const = np.asarray(G.synthesize(wp, "wp"))
    np.testing.assert_array_equal(const, np.asarray(G.synthesize(wp, "wp", noise_mode="const")))  # the default
    none = np.asarray(G.synthesize(wp, "wp", noise_mode="none"))
    assert not np.allclose(none, const)
    zeroed = jax.tree.map(np.zeros_like, G.buffers)
    zeroed["mapping"] = G.buffers["mapping"]  # w_avg stays; every noise map is zero
    direct = np.asarray(jax.jit(lambda p, b, c: G.apply_synthesize(p, b, c, "wp"))(G.params, zeroed, wp))
    np.testing.assert_allclose(none, direct, rtol=1e-5, atol=1e-5)
    a = np.asarray(G.synthesize(wp, "wp", noise_mode="random", key=jax.random.key(0)))
    b = np.asarray(G.synthesize(wp, "wp", noise_mode="random", key=jax.random.key(1)))
    assert not np.allclose(a, b) and not np.allclose(a, const)
    np.testing.assert_array_equal(a, np.asarray(G.synthesize(wp, "wp", noise_mode="random", key=jax.random.key(0))))


def test_random_noise_is_per_image(sg2):
    """Image i's noise depends on (key, i) only: alone with its own key it is the same image."""
    _, G, wp = sg2
    keys = latents.noise_keys(7, 0, 4)
    whole = np.asarray(G.synthesize(wp, "wp", noise_mode="random", key=keys))
    alone = np.asarray(G.synthesize(wp[2:3], "wp", noise_mode="random", key=keys[2:3]))
    np.testing.assert_allclose(whole[2:3], alone, atol=1e-5)
    assert not np.allclose(whole[0], np.asarray(G.synthesize(wp[:1], "wp", noise_mode="random", key=keys[1:2]))[0])


def test_bad_modes_are_refused(sg2, dcgan):
    _, G, wp = sg2
    with pytest.raises(InputError, match="noise_mode must be one of"):
        G.synthesize(wp, "wp", noise_mode="loud")
    with pytest.raises(InputError, match="no noise inputs"):
        dcgan.synthesize(dcgan.sample_latents(0, 0, 1), noise_mode="none")
    with pytest.raises(InputError, match="key must be one PRNG key or one per image"):
        G.synthesize(wp, "wp", noise_mode="random", key=latents.noise_keys(0, 0, 3))


def test_sample_flag_random_is_deterministic_per_index(sg2, tmp_path):
    model, G, _ = sg2
    for name, extra in (("const", []), ("a", ["--batch-size", "4"]), ("b", ["--batch-size", "3"])):
        mode = "const" if name == "const" else "random"
        argv = ["sample", "-m", str(model), "-n", "5", "--images", "npy", "--noise-mode", mode, "-o",
                str(tmp_path / name), "--quiet", *extra]
        assert main(argv) == 0
    a, b, const = (np.load(tmp_path / n / "images.npy") for n in ("a", "b", "const"))
    # The batch size does not change a sample's noise (pixels may round apart by 1: XLA's kernels differ by
    # batch shape, as for const noise).
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert np.abs(a.astype(int) - const.astype(int)).max() > 10
    # const is the model's default: the same images as a run without the flag
    assert main(["sample", "-m", str(model), "-n", "5", "--images", "npy", "-o", str(tmp_path / "d"), "--quiet"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "d" / "images.npy"), const)


def test_edit_random_noise_is_the_samples_own(sg2, tmp_path):
    """`edit --noise-mode random` renders sample s with the noise `sample --noise-mode random` drew for s."""
    model, G, _ = sg2
    assert main(["sample", "-m", str(model), "-n", "2", "--images", "npy", "--noise-mode", "random", "-o",
                 str(tmp_path / "s"), "--quiet"]) == 0
    np.save(tmp_path / "b.npy", np.ones((1, G.latent_dim), np.float32))
    assert main(["edit", "-m", str(model), "-i", str(tmp_path / "s" / "wp.npy"), "-s", "wp", "-b",
                 str(tmp_path / "b.npy"), "--mode", "relative", "--start-distance", "0", "--end-distance", "0",
                 "--steps", "1", "--noise-mode", "random", "-o", str(tmp_path / "e"), "--quiet"]) == 0
    sampled = np.load(tmp_path / "s" / "images.npy")
    from PIL import Image

    edited = np.stack([np.asarray(Image.open(tmp_path / "e" / "images" / f"{i:06d}_00_000.png")) for i in range(2)])
    assert np.abs(edited.astype(int) - sampled.astype(int)).max() <= 1

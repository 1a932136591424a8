"""GAN inversion: image loading, VGG16/LPIPS conversion, per-image independence, NaN handling, sharding,
StyleGAN W/W+ and noise, and the resumable `run.py invert` CLI."""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import FIXTURES, ROOT, needs_dcgan, run_cli
from PIL import Image

import ifgan_jax
from ifgan_jax import images as imgs
from ifgan_jax import inversion as inv
from ifgan_jax.errors import InputError
from ifgan_jax.models import vgg16 as vggm

HERE = FIXTURES / "invert"
FACES = HERE / "faces"


@pytest.fixture(scope="module")
def targets(dcgan):
    """In-domain targets: DCGAN images of known codes, quantized to uint8 as if read from PNG."""
    z = dcgan.sample_latents(seed=1234, start=0, count=16)
    return np.asarray(dcgan.synthesize_uint8(z))


# -- images --------------------------------------------------------------------------------------------


def _save(tmp_path, name, image):
    path = tmp_path / name
    image.save(path)
    return path


def test_image_modes(tmp_path):
    rgb = np.asarray(Image.open(FACES / "face0.png").convert("RGB"))
    gray = Image.fromarray(rgb).convert("L")
    out = imgs.load_image(_save(tmp_path, "g.png", gray), 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert np.array_equal(out[..., 0], np.asarray(gray)) and np.array_equal(out[..., 0], out[..., 2])
    # 16-bit gray: scaled by value (Pillow's convert would clip everything above 255 to white).
    g16 = (np.asarray(gray).astype(np.uint16) * 257)
    i16 = Image.fromarray(g16)
    assert i16.mode == "I;16"
    out16 = imgs.load_image(_save(tmp_path, "g16.png", i16), 64)
    assert np.array_equal(out16[..., 0], np.asarray(gray))
    # RGBA: transparent pixels composite over white, opaque ones keep their color.
    rgba = np.dstack([rgb, np.full((64, 64), 255, np.uint8)])
    rgba[:32, :, 3] = 0
    out_a = imgs.load_image(_save(tmp_path, "a.png", Image.fromarray(rgba, "RGBA")), 64)
    assert (out_a[:32] == 255).all() and np.array_equal(out_a[32:], rgb[32:])
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE)
    out_p = imgs.load_image(_save(tmp_path, "p.png", pal), 64)
    assert np.array_equal(out_p, np.asarray(pal.convert("RGB")))
    # A native-size RGB image passes through untouched (no resampling).
    assert np.array_equal(imgs.load_image(FACES / "face0.png", 64), rgb)


def test_crop_and_resize():
    wide = np.zeros((40, 80, 3), np.uint8)
    wide[:, 20:60] = 200  # the center square is uniformly bright
    cropped = imgs.fit(wide, 16)
    assert cropped.shape == (16, 16, 3) and (cropped == 200).all()
    stretched = imgs.fit(wide, 16, crop=False)
    assert stretched.shape == (16, 16, 3) and stretched[:, 0].max() < 50 and stretched[:, 8].min() > 150
    face = imgs.load_image(FACES / "face2_96x80.png", 64)
    assert face.shape == (64, 64, 3)


def test_folder_failures_and_npy(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(FACES / "face0.png", folder / "b.png")
    shutil.copy(FACES / "face1.png", folder / "a.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").write_bytes((FACES / "face0.png").read_bytes()[:200])
    Image.new("RGB", (5, 5)).save(folder / "tiny.png")
    (folder / ".hidden").write_text("x")
    (folder / "sub").mkdir()
    loaded = imgs.load_images(folder, 64)
    assert loaded.names == ["a.png", "b.png"]
    assert loaded.uint8.shape == (2, 64, 64, 3) and loaded.images.dtype == np.float32
    assert abs(float(loaded.images.min())) <= 1.0 and float(loaded.images.max()) <= 1.0
    reasons = {f["source"]: f["reason"] for f in loaded.failures}
    assert set(reasons) == {"broken.png", "notes.txt", "tiny.png"}
    assert "not an image" in reasons["notes.txt"] and "smaller than 8" in reasons["tiny.png"]

    stack = np.stack([np.asarray(Image.open(FACES / f"face{i}.png")) for i in range(2)])
    np.save(tmp_path / "x.npy", stack)
    from_npy = imgs.load_images(tmp_path / "x.npy", 64)
    assert np.array_equal(from_npy.uint8, stack) and from_npy.names == ["x.npy[0]", "x.npy[1]"]
    np.save(tmp_path / "f.npy", stack.astype(np.float32))
    with pytest.raises(InputError, match="uint8"):
        imgs.load_images(tmp_path / "f.npy", 64)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty"):
        imgs.load_images(tmp_path / "empty", 64)


# -- VGG16 / LPIPS --------------------------------------------------------------------------------------


def test_vgg16_conversion_matches_torch():
    ref = np.load(HERE / "vgg16_tiny_ref.npz")
    vgg = inv.load_vgg16(HERE / "vgg16_tiny.pth")
    assert not vgg.has_lin
    feats = vggm.vgg16_features(vgg.params, jnp.asarray(ref["x"]))
    for k, f in enumerate(feats):
        np.testing.assert_allclose(np.asarray(f), ref[f"feat{k}"], atol=1e-5, rtol=1e-4)
    fx, fy = (vggm.lpips_features(vgg.params, jnp.asarray(ref[k])) for k in ("x", "y"))
    np.testing.assert_allclose(np.asarray(vggm.lpips_distance(vgg.params, fx, fy)), ref["plain"], rtol=1e-5)
    headed = inv.load_vgg16(HERE / "vgg16_tiny.pth", HERE / "lpips_lin_tiny.pth")
    assert headed.has_lin
    np.testing.assert_allclose(np.asarray(vggm.lpips_distance(headed.params, fx, fy)), ref["headed"], rtol=1e-5)


def test_vgg16_bad_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        inv.load_vgg16(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(InputError, match="junk.pth"):
        inv.load_vgg16(tmp_path / "junk.pth")
    with pytest.raises(InputError, match="features.0.weight"):
        inv.load_vgg16(HERE / "lpips_lin_tiny.pth")


# -- inversion (DCGAN) ----------------------------------------------------------------------------------


def test_schedule_and_init_parsing():
    sched = inv.lr_schedule(0.1, 100)
    lrs = np.asarray([float(sched(i)) for i in range(101)])
    assert lrs[0] == 0 and abs(lrs[5] - 0.1) < 1e-7 and abs(lrs[50] - 0.1) < 1e-7 and lrs[100] < 1e-7
    assert (np.diff(lrs[:6]) > 0).all() and (np.diff(lrs[75:]) < 0).all()
    assert inv.parse_init("best-of-64") == ("best-of", 64) and inv.parse_init("mean") == ("mean", 0)
    for bad in ("best", "best-of-0", "median", "best-of-x"):
        with pytest.raises(InputError):
            inv.parse_init(bad)


@needs_dcgan
def test_inversion_improves_fast(dcgan, targets):
    t = targets[:3]
    res = inv.invert(dcgan, t, steps=60, init="best-of-64")
    start = inv.initial_codes(dcgan, inv.check_targets(dcgan, t), "z", "best-of-64", 0)
    start_mse = np.mean((np.asarray(dcgan.synthesize(start)) - inv.check_targets(dcgan, t)) ** 2, axis=(1, 2, 3))
    assert res.codes.shape == (3, 100) and res.reconstructions.shape == (3, 64, 64, 3)
    assert (res.steps == 60).all() and not res.failed.any()
    assert (res.mse < 0.5 * start_mse).all()
    assert (res.psnr > inv.psnr(start_mse) + 3).all()
    # The codes reproduce the reconstructions through the public API.
    again = np.asarray(dcgan.synthesize(res.codes))
    assert np.abs(again - res.reconstructions).max() < 1e-4
    np.testing.assert_allclose(res.loss, res.mse, rtol=1e-5)  # mse loss, tanh output needs no clipping


@needs_dcgan
def test_image_alone_equals_image_in_batch(dcgan, targets):
    # The issue asks for 1e-5. On CPU every image runs in a program of one micro-batch shape, so the result is
    # bit-identical; 60 Adam steps at lr 0.1 amplify any rounding difference far beyond 1e-5 (3e-3 at 15 steps
    # when shapes differed).
    kw = dict(steps=60, init="random", initial_noise=0.05, seed=3)
    batch = inv.invert(dcgan, targets, **kw)
    alone = inv.invert(dcgan, targets[5:6], **kw)
    np.testing.assert_array_equal(alone.codes[0], batch.codes[5])
    assert float(alone.mse[0]) == float(batch.mse[5])
    # Padding (5 images run as 16), position and a batch of two micro-batches (16 + 5 run as 32) do not matter.
    moved = inv.invert(dcgan, targets[[9, 5, 1, 2, 3]], **kw)
    np.testing.assert_array_equal(moved.codes[1], batch.codes[5])
    bigger = inv.invert(dcgan, np.concatenate([targets, targets[:5]]), batch_size=32, **kw)
    np.testing.assert_array_equal(bigger.codes[5], batch.codes[5])
    np.testing.assert_array_equal(bigger.codes[16 + 3], moved.codes[4])


@needs_dcgan
def test_nan_image_is_stopped_and_others_continue(dcgan, targets):
    t = inv.check_targets(dcgan, targets[:4]).copy()
    t[2, 0, 0, 0] = 0.123456  # a marker the loss below turns into NaN

    def loss(recon, target):
        mse = jnp.mean(jnp.square(recon - target), axis=(1, 2, 3))
        return jnp.where(target[:, 0, 0, 0] == jnp.float32(0.123456), jnp.nan, mse)

    res = inv.invert(dcgan, t, steps=20, loss=loss, init="best-of-16")
    assert res.failed.tolist() == [False, False, True, False]
    assert res.steps.tolist() == [20, 20, 0, 20]
    assert np.isfinite(res.codes).all()
    clean = inv.invert(dcgan, t[[0, 1, 3]], steps=20, loss=loss, init="best-of-16")
    assert np.abs(clean.codes - res.codes[[0, 1, 3]]).max() < 1e-5


@needs_dcgan
def test_optimizer_loss_and_argument_checks(dcgan, targets):
    res = inv.invert(dcgan, targets[:2], steps=10, optimizer=optax.sgd(1e-2), init="mean", sphere=False)
    assert res.codes.shape == (2, 100) and (res.steps == 10).all()
    stopped = inv.invert(dcgan, targets[:2], steps=50, init="best-of-16", stop_loss=1.0)
    assert (stopped.steps == 0).all()  # the loss starts below 1.0: nothing to do
    for kwargs, match in [
        (dict(optimizer=optax.sgd(0.1), lr=0.1), "lr"),
        (dict(loss="lpips"), "VGG16"),
        (dict(loss="l1"), "loss must be"),
        (dict(space="w"), "no 'w' space"),
        (dict(steps=0), "steps"),
        (dict(init="best-of-0"), "init"),
        (dict(init="mean"), "sphere"),
        (dict(optimize_noise=True), "no noise"),
        (dict(seed=-1), "seed"),
    ]:
        with pytest.raises(InputError, match=match):
            inv.invert(dcgan, targets[:1], **kwargs)
    with pytest.raises(InputError, match="shape"):
        inv.invert(dcgan, np.zeros((1, 32, 32, 3), np.uint8))


@needs_dcgan
def test_plan_is_built_once_and_passed(dcgan, targets):
    plan = inv.make_plan(dcgan, steps=5, init="best-of-16", seed=2, batch_size=4)
    assert (plan.space, plan.steps, plan.lr, plan.init, plan.seed, plan.batch_size) == ("z", 5, 0.1, "best-of-16", 2, 4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.steps = 6
    by_plan = inv.invert(dcgan, targets[:2], plan)
    by_settings = inv.invert(dcgan, targets[:2], steps=5, init="best-of-16", seed=2, batch_size=4)
    np.testing.assert_array_equal(by_plan.codes, by_settings.codes)
    assert by_plan.init == "best-of-16" and (by_plan.steps == 5).all()
    with pytest.raises(InputError, match="not both"):
        inv.invert(dcgan, targets[:1], plan=plan, steps=6)
    lpips_plan = inv.make_plan(dcgan, vgg16=inv.load_vgg16(HERE / "vgg16_tiny.pth"))
    assert lpips_plan.loss == "mse+lpips"
    with pytest.raises(InputError, match="needs VGG16 weights"):  # the plan's loss needs them at run time too
        inv.invert(dcgan, targets[:1], plan=lpips_plan)
    # The library names its keywords; the `invert` command says them as its flags (InputError.as_flag).
    for kwargs, cli, library in [(dict(steps=0), "--steps must be >= 1", "steps must be >= 1"),
                                 (dict(batch_size=0), "--batch-size must be >= 1", "batch_size must be >= 1"),
                                 (dict(seed=2**32), "--seed must be in", "seed must be in"),
                                 (dict(lr=-1.0), "--lr must be a positive", "lr must be a positive"),
                                 (dict(micro_batch=-1), "--micro-batch must be >= 0", "micro_batch must be >= 0")]:
        with pytest.raises(InputError, match=f"^{library}") as caught:
            inv.make_plan(dcgan, **kwargs)
        assert caught.value.as_flag().startswith(cli), caught.value.as_flag()


@needs_dcgan
def test_perceptual_loss_plumbing(dcgan, targets):
    vgg = inv.load_vgg16(HERE / "vgg16_tiny.pth", HERE / "lpips_lin_tiny.pth")
    res = inv.invert(dcgan, targets[:2], steps=15, vgg16=vgg, init="best-of-16", perceptual_weight=0.5)
    assert np.isfinite(res.loss).all() and (res.steps == 15).all()
    t = inv.check_targets(dcgan, targets[:2])
    fr = vggm.lpips_features(vgg.params, jnp.asarray(res.reconstructions))
    ft = vggm.lpips_features(vgg.params, jnp.asarray(t))
    expected = res.mse + 0.5 * np.asarray(vggm.lpips_distance(vgg.params, fr, ft))
    np.testing.assert_allclose(res.loss, expected, rtol=1e-4)


@needs_dcgan
def test_four_devices_match_one(dcgan, targets, tmp_path):
    np.save(tmp_path / "t.npy", targets[:6])
    script = textwrap.dedent(f"""
        import numpy as np, ifgan_jax
        from ifgan_jax.inversion import invert
        G = ifgan_jax.load_generator("dcgan_digiface")
        assert G.num_devices == 4
        r = invert(G, np.load(r"{tmp_path / 't.npy'}"), steps=20, init="random", initial_noise=0.05)
        np.save(r"{tmp_path / 'codes4.npy'}", r.codes)
    """)
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, **env})
    assert res.returncode == 0, res.stderr[-2000:]
    one = inv.invert(dcgan, targets[:6], steps=20, init="random", initial_noise=0.05)
    assert np.abs(np.load(tmp_path / "codes4.npy") - one.codes).max() < 1e-5


@pytest.mark.slow
@needs_dcgan
def test_defaults_reach_30db(dcgan):
    z = dcgan.sample_latents(seed=4321, start=0, count=8)
    res = inv.invert(dcgan, np.asarray(dcgan.synthesize_uint8(z)))
    assert res.psnr.mean() >= 30.0, res.psnr


# -- StyleGAN (W, W+, noise) on a tiny random model ------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_stylegan():
    from ifgan_jax.models import stylegan

    config = stylegan.Config(resolution=8, latent_dim=16)
    pshapes, bshapes = stylegan.param_shapes(config)
    rng = np.random.default_rng(0)

    def fill(path, s):
        name = jax.tree_util.keystr(path)
        if "bias" in name:
            return np.zeros(s.shape, np.float32)
        scale = 100.0 if "mapping" in name else 1.0  # mapping weights are stored at 1 / lr multiplier
        return (rng.standard_normal(s.shape) * scale).astype(np.float32)

    params = jax.tree_util.tree_map_with_path(fill, pshapes)
    buffers = jax.tree_util.tree_map_with_path(
        lambda p, s: rng.standard_normal(s.shape).astype(np.float32) if "noise" in jax.tree_util.keystr(p)
        else np.zeros(s.shape, np.float32), bshapes)
    return ifgan_jax.Generator("tiny_stylegan", stylegan.architecture(config), params, buffers)


@pytest.mark.parametrize("space", ["w", "wp"])
def test_stylegan_w_and_wp(tiny_stylegan, space):
    G = tiny_stylegan
    wp = np.asarray(G.truncate(G.mapping(np.random.default_rng(1).standard_normal((2, 16)).astype(np.float32))))
    # The toy model's raw output spans about [-3.5, 3.5]: compare raw images (the loss), not clipped ones.
    t = np.asarray(G.synthesize(wp, "wp"))
    mean, spread = inv.latent_stats(G, space)  # the default init
    assert spread > 0
    start = np.asarray(G.synthesize(np.stack([mean, mean]), space))
    start_loss = np.mean(np.square(start - t), axis=(1, 2, 3))
    # Its codes are ~0.4 per element: a smaller lr than NVlabs' 0.1 for real StyleGANs.
    res = inv.invert(G, t, space, steps=12, lr=0.03)
    assert res.codes.shape == ((2, 16) if space == "w" else (2, 4, 16))
    assert (res.loss < 0.7 * start_loss).all(), (res.loss, start_loss)


def test_stylegan_noise_optimization(tiny_stylegan):
    G = tiny_stylegan
    t = np.asarray(G.synthesize(np.asarray(G.truncate(G.mapping(np.ones((2, 16), np.float32)))), "wp"))
    res = inv.invert(G, t, "wp", steps=3, lr=0.02, optimize_noise=True)
    assert res.noise is not None and len(res.noise) == 4
    for maps in res.noise.values():
        assert maps.shape[0] == 2
        np.testing.assert_allclose(maps.mean(axis=(1, 2)), 0, atol=1e-5)
        np.testing.assert_allclose(maps.std(axis=(1, 2)), 1, atol=1e-4)
    with pytest.raises(InputError, match="W or W\\+"):
        inv.invert(G, t, "z", optimize_noise=True)


# -- CLI ------------------------------------------------------------------------------------------------


def _files(directory):
    return sorted(p.relative_to(directory) for p in directory.rglob("*") if p.is_file())


@needs_dcgan
def test_cli_outputs(tmp_path, dcgan):
    src = tmp_path / "in"
    shutil.copytree(FACES, src)
    (src / "zz_notes.txt").write_text("hello")
    out = tmp_path / "out"
    res = run_cli("invert", "-i", str(src), "-o", str(out), "--steps", "25", "--batch-size", "2", "--init",
                  "best-of-16", "--quiet")
    assert res.returncode == 0, res.stderr
    assert "inverted 3 images" in res.stdout
    codes = np.load(out / "codes.npy")
    assert codes.shape == (3, 100) and codes.dtype == np.float32
    metrics = json.loads((out / "metrics.json").read_text())
    assert [m["source"] for m in metrics["images"]] == ["face0.png", "face1.png", "face2_96x80.png"]
    assert all(m["steps"] == 25 and not m["failed"] and m["psnr"] > 15 for m in metrics["images"])
    failed = json.loads((out / "failed.json").read_text())
    assert [f["source"] for f in failed] == ["zz_notes.txt"] and failed[0]["stage"] == "load"
    recon = np.stack([np.asarray(Image.open(out / "reconstructions" / f"{i:06d}.png")) for i in range(3)])
    assert np.abs(recon.astype(int) - np.asarray(dcgan.synthesize_uint8(codes))).max() <= 1
    grid = Image.open(out / "grid.png")
    assert grid.size == (2 + 6 * 66, 2 + 66)  # one row: three (target | result) pairs
    assert not (out / "batches").exists() and not (out / ".progress.json").exists()
    assert json.loads((out / "meta.json").read_text())["complete"]
    # The same command again is a no-op; different settings are refused unless --overwrite.
    again = run_cli("invert", "-i", str(src), "-o", str(out), "--steps", "25", "--batch-size", "2", "--init",
                    "best-of-16", "--quiet")
    assert again.returncode == 0 and "already complete" in again.stdout
    other = run_cli("invert", "-i", str(src), "-o", str(out), "--steps", "5", "--quiet")
    assert other.returncode == 2 and "--overwrite" in other.stderr and "Traceback" not in other.stderr
    over = run_cli("invert", "-i", str(src), "-o", str(out), "--steps", "5", "--quiet", "--overwrite")
    assert over.returncode == 0, over.stderr
    assert json.loads((out / "metrics.json").read_text())["images"][0]["steps"] == 5


@needs_dcgan
def test_cli_resume_after_kill_gives_identical_files(tmp_path, targets):
    np.save(tmp_path / "t.npy", targets[:8])
    args = ["invert", "-i", str(tmp_path / "t.npy"), "--steps", "40", "--batch-size", "2", "--init",
            "best-of-16", "--quiet"]
    full = tmp_path / "full"
    res = run_cli(*args, "-o", str(full))
    assert res.returncode == 0, res.stderr
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), *args, "-o", str(killed)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress = killed / ".progress.json"
    deadline = time.time() + 240
    while time.time() < deadline:
        if progress.exists() and json.loads(progress.read_text() or "{}").get("done", 0) >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = json.loads(progress.read_text())["done"]
    assert 0 < done < 8, "the kill should land mid-run"
    res = run_cli(*args, "-o", str(killed))
    assert res.returncode == 0, res.stderr
    names = _files(full)
    assert names == _files(killed)
    for name in names:
        assert (full / name).read_bytes() == (killed / name).read_bytes(), name


@needs_dcgan
def test_cli_bad_inputs_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("x")
    np.save(tmp_path / "f.npy", np.zeros((2, 64, 64, 3), np.float32))
    cases = [
        (["-i", str(tmp_path / "missing")], "does not exist"),
        (["-i", str(tmp_path / "empty")], "empty"),
        (["-i", str(tmp_path / "junk")], "no usable images"),
        (["-i", str(tmp_path / "f.npy")], "uint8"),
        (["-i", str(FACES), "--init", "best"], "init"),
        (["-i", str(FACES), "--space", "w"], "no 'w' space"),
        (["-i", str(FACES), "--steps", "0"], "steps"),
        (["-i", str(FACES), "--vgg16", str(tmp_path / "nope.pth")], "does not exist"),
    ]
    for args, match in cases:
        res = run_cli("invert", *args, "-o", str(tmp_path / "out"))
        assert res.returncode == 2, (args, res.stderr)
        assert match in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "out").exists()

"""Inversion encoders: the train-encoder path (tiny, a few steps), resume after an interruption to the same
parameters, NaN handling, encoder directories (sha256, refused by name), `invert --init encoder` with
--steps 0 and refinement, and the shipped encoder against the mean init."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from conftest import FIXTURES, ROOT, needs_dcgan, run_cli

import ifgan_jax
from ifgan_jax import inversion as inv
from ifgan_jax.errors import InputError
from ifgan_jax.inversion import encoder as enc
from ifgan_jax.inversion import training
from ifgan_jax.jobs import train_encoder

FACES = FIXTURES / "invert" / "faces"
TINY = {"batch_size": 4, "base_channels": 8, "max_channels": 16, "hidden": 32, "show_progress": False}


def _train(out, steps=4, **kwargs):
    return train_encoder.run(out, steps=steps, checkpoint_every=2, log_every=2, **{**TINY, **kwargs})


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory, dcgan):
    out = tmp_path_factory.mktemp("enc") / "tiny"
    _train(out, real_images=str(FACES))  # with idinvert's in-domain loss on real photos
    return out


@pytest.fixture(scope="module")
def targets(dcgan):
    """In-domain faces (generated, never encoder training data), quantized to uint8."""
    return np.asarray(dcgan.synthesize_uint8(dcgan.sample_latents(seed=1234, start=0, count=8)))


@needs_dcgan
def test_train_tiny_encoder_path(tiny_encoder, dcgan, capsys):
    out = tiny_encoder
    manifest = json.loads((out / enc.MANIFEST).read_text())
    assert (manifest["model"], manifest["space"], manifest["train"]["steps"]) == ("dcgan_digiface", "z", 4)
    assert manifest["train"]["real_batch"] == 2 and manifest["train"]["real_weight"] == 1.0
    assert manifest["command"].startswith("python run.py train-encoder -m dcgan_digiface --space z --steps 4")
    assert len(manifest["arrays_sha256"]) == 64 and np.isfinite(manifest["eval"]["mean_psnr"])
    log = [json.loads(line) for line in (out / train_encoder.LOG_FILE).read_text().splitlines()]
    assert [e["step"] for e in log] == [2, 4] and all(np.isfinite(e["loss"]) and e["real"] > 0 for e in log)
    assert json.loads((out / "meta.json").read_text())["complete"]
    assert not (out / train_encoder.CHECKPOINTS).exists()  # dropped once the encoder is written
    E = enc.load_encoder(out)
    codes = np.asarray(E.encode(np.zeros((3, 64, 64, 3), np.float32)))
    assert codes.shape == (3, 100) and np.isfinite(codes).all()
    # The same command again: complete, nothing redone; different settings: refused.
    assert _train(out, real_images=str(FACES))["steps"] == 4
    assert "already complete" in capsys.readouterr().out
    with pytest.raises(InputError, match="different run"):
        _train(out, lr=2e-3, real_images=str(FACES))


@needs_dcgan
def test_resume_after_interruption_gives_identical_params(tmp_path, dcgan, monkeypatch):
    _train(tmp_path / "straight", steps=6)
    real_make = training.make_train_step

    def killed_after_3(*args, **kwargs):
        step = real_make(*args, **kwargs)
        calls = []

        def wrapped(*a):
            if len(calls) == 3:  # after the checkpoint of step 2, before the one of step 4
                raise KeyboardInterrupt
            calls.append(1)
            return step(*a)
        return wrapped

    monkeypatch.setattr(training, "make_train_step", killed_after_3)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "resumed", steps=6)
    assert not (tmp_path / "resumed" / enc.MANIFEST).exists()
    assert json.loads((tmp_path / "resumed" / ".progress.json").read_text())["done"] == 2
    monkeypatch.setattr(training, "make_train_step", real_make)
    _train(tmp_path / "resumed", steps=6)
    a, b = (json.loads((tmp_path / d / enc.MANIFEST).read_text()) for d in ("straight", "resumed"))
    assert a["arrays_sha256"] == b["arrays_sha256"]
    log_a, log_b = ([{k: v for k, v in json.loads(line).items() if k != "elapsed_s"}
                     for line in (tmp_path / d / train_encoder.LOG_FILE).read_text().splitlines()]
                    for d in ("straight", "resumed"))
    assert log_a == log_b


@needs_dcgan
def test_nan_stops_with_the_step_named_and_keeps_the_checkpoint(tmp_path, dcgan):
    out = tmp_path / "nan"
    with pytest.raises(InputError, match=r"diverged at step \d+ .*last good checkpoint \(step \d+\)"):
        train_encoder.run(out, steps=8, lr=1e30, checkpoint_every=1, log_every=1, **TINY)
    assert (out / train_encoder.CHECKPOINTS).is_dir() and not (out / enc.MANIFEST).exists()


@needs_dcgan
def test_steps_zero_is_the_encoder_alone(tiny_encoder, dcgan, targets, tmp_path):
    E = enc.load_encoder(tiny_encoder)
    plan = inv.make_plan(dcgan, steps=0, encoder=tiny_encoder)
    assert (plan.init, plan.batch_size, plan.steps) == ("encoder", inv.ENCODER_BATCH, 0)
    res = inv.invert(dcgan, targets, plan)
    assert (res.steps == 0).all() and res.init == "encoder" and not res.failed.any()
    np.testing.assert_array_equal(res.codes, np.asarray(E.encode(inv.check_targets(dcgan, targets))))
    alone = inv.invert(dcgan, targets[3:4], plan)  # a result does not depend on its batch mates
    np.testing.assert_array_equal(alone.codes[0], res.codes[3])
    refined = inv.invert(dcgan, targets[:2], init="encoder", encoder=E, steps=5, batch_size=2, domain_weight=0.1)
    assert (refined.steps == 5).all() and np.isfinite(refined.loss).all()
    # The command: --steps 0, codes.npy as the encoder gives them.
    res_cli = run_cli("invert", "-i", str(FACES), "-o", str(tmp_path / "inv"), "--init", "encoder",
                      "--encoder", str(tiny_encoder), "--steps", "0", "--quiet")
    assert res_cli.returncode == 0, res_cli.stderr
    metrics = json.loads((tmp_path / "inv" / "metrics.json").read_text())
    assert all(m["steps"] == 0 for m in metrics["images"])
    assert np.load(tmp_path / "inv" / "codes.npy").shape == (len(metrics["images"]), 100)


@needs_dcgan
def test_encoder_directories_are_checked(tiny_encoder, dcgan, tmp_path):
    for field, value, match in [("space", "w", "trained for the 'w' space"),
                                ("model", "pggan_celebahq", "trained for model 'pggan_celebahq'"),
                                ("arrays_sha256", "0" * 64, "do not match the sha256")]:
        bad = tmp_path / field
        subprocess.run(["cp", "-r", str(tiny_encoder), str(bad)], check=True)
        manifest = json.loads((bad / enc.MANIFEST).read_text())
        (bad / enc.MANIFEST).write_text(json.dumps({**manifest, field: value}))
        with pytest.raises(InputError, match=match):
            inv.make_plan(dcgan, init="encoder", encoder=bad)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / enc.MANIFEST).write_text("{not json")
    for directory, match in [(tmp_path / "missing", "does not exist"), (tmp_path / "junk", "no readable")]:
        with pytest.raises(InputError, match=match):
            inv.make_plan(dcgan, init="encoder", encoder=directory)
    with pytest.raises(InputError, match="steps must be >= 1"):
        inv.make_plan(dcgan, steps=0)  # 0 steps only with the encoder


def test_bad_input_exits_2(tmp_path):
    cases = [
        (["invert", "-i", str(FACES), "--init", "encoder", "--encoder", str(tmp_path / "nope"), "--steps", "0"],
         "does not exist"),
        (["train-encoder", "--steps", "0"], "--steps must be >= 1"),
        (["train-encoder", "--space", "w", "--steps", "2"], "no 'w' space"),
    ]
    for args, match in cases:
        res = run_cli(*args, "-o", str(tmp_path / "out"))
        assert res.returncode == 2, (args, res.stderr)
        assert match in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "out").exists()


@needs_dcgan
def test_shipped_encoder_beats_the_mean_init(dcgan, targets):
    if enc.shipped_encoder_dir(dcgan.name, "z") is None:
        pytest.skip("no encoder shipped for dcgan_digiface (ifgan_jax/data/encoders/)")
    only = inv.invert(dcgan, targets, init="encoder", steps=0)
    steps = 20
    from_encoder = inv.invert(dcgan, targets, init="encoder", steps=steps, batch_size=8)
    from_mean = inv.invert(dcgan, targets, init="mean", sphere=False, steps=steps, batch_size=8)
    assert from_encoder.psnr.mean() > from_mean.psnr.mean() + 3.0, (from_encoder.psnr, from_mean.psnr)
    assert from_encoder.psnr.mean() >= only.psnr.mean() - 0.5  # refinement does not lose the encoder's start
    assert only.psnr.mean() > 18.0


@pytest.fixture(scope="module")
def tiny_stylegan():
    """A random 8 px StyleGAN (as tests/test_invert.py builds it)."""
    from ifgan_jax.models import stylegan

    config = stylegan.Config(resolution=8, latent_dim=16)
    pshapes, bshapes = stylegan.param_shapes(config)
    rng = np.random.default_rng(0)

    def fill(path, s):
        name = jax.tree_util.keystr(path)
        if "bias" in name:
            return np.zeros(s.shape, np.float32)
        return (rng.standard_normal(s.shape) * (100.0 if "mapping" in name else 1.0)).astype(np.float32)

    params = jax.tree_util.tree_map_with_path(fill, pshapes)
    buffers = jax.tree_util.tree_map_with_path(
        lambda p, s: rng.standard_normal(s.shape).astype(np.float32) if "noise" in jax.tree_util.keystr(p)
        else np.zeros(s.shape, np.float32), bshapes)
    return ifgan_jax.Generator("tiny_stylegan", stylegan.architecture(config), params, buffers)


@pytest.mark.parametrize("space", ["w", "wp"])
def test_stylegan_w_and_wp_encoders(tiny_stylegan, space, tmp_path):
    G = tiny_stylegan
    settings = training.TrainSettings(space=space, steps=3, batch_size=4, lr=1e-3, seed=0)
    fresh = enc.new_encoder(G, space, 0, base_channels=8, max_channels=16, hidden=32)
    summary = train_encoder.train(G, fresh, settings, tmp_path, vgg=None, real=None, checkpoint_every=2,
                                  log_every=1, show_progress=False, command="test")
    assert summary["steps"] == 3 and np.isfinite(summary["eval"]["mean_psnr"])
    E = enc.load_encoder(tmp_path)
    shape = (16,) if space == "w" else (G.num_layers, 16)
    assert E.config.code_shape == shape and np.allclose(E.center, inv.latent_stats(G, space)[0])
    images = np.asarray(G.synthesize(G.mapping(G.sample_latents(5, 0, 2)), "w"))
    only = inv.invert(G, images, space, init="encoder", encoder=E, steps=0)
    assert only.codes.shape == (2, *shape) and (only.steps == 0).all()
    refined = inv.invert(G, images, space, init="encoder", encoder=E, steps=3, lr=0.01, domain_weight=0.5)
    assert refined.codes.shape == (2, *shape) and np.isfinite(refined.loss).all()
    with pytest.raises(InputError, match="trained for the"):
        inv.make_plan(G, "wp" if space == "w" else "w", init="encoder", encoder=E)


@pytest.mark.slow
@needs_dcgan
def test_kill_9_then_resume_gives_identical_params(tmp_path, dcgan):
    args = ["train-encoder", "--steps", "12", "--checkpoint-every", "2", "--log-every", "2", "--batch-size", "4",
            "--base-channels", "8", "--max-channels", "16", "--hidden", "32", "--quiet"]
    assert run_cli(*args, "-o", str(tmp_path / "straight")).returncode == 0
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), *args, "-o", str(tmp_path / "killed")],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress = tmp_path / "killed" / ".progress.json"
    deadline = time.time() + 300
    while time.time() < deadline and not (progress.is_file() and json.loads(progress.read_text())["done"] >= 4):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / enc.MANIFEST).exists()
    assert run_cli(*args, "-o", str(tmp_path / "killed")).returncode == 0
    a, b = (json.loads((tmp_path / d / enc.MANIFEST).read_text()) for d in ("straight", "killed"))
    assert a["arrays_sha256"] == b["arrays_sha256"]


@needs_dcgan
def test_perceptual_term_is_lpips_on_the_reconstruction(dcgan):
    """With VGG16 weights the pixel term is mse + (perceptual / pixel weight) * LPIPS of G(E(x)) against x,
    LPIPS computed here apart from the step (tiny VGG16 fixture, torchvision layout)."""
    import jax.numpy as jnp

    from ifgan_jax.models import vgg16 as vggm

    G = dcgan
    vgg = inv.load_vgg16(FIXTURES / "invert" / "vgg16_tiny.pth")
    E = enc.new_encoder(G, "z", 0, base_channels=8, max_channels=16, hidden=32)
    z = jnp.asarray(G.sample_latents(7, 0, 4))
    metrics = {}
    for name, weight, net in (("plain", 0.0, None), ("perceptual", 2.0, vgg)):
        settings = training.TrainSettings(space="z", steps=1, batch_size=4, lr=1e-3, seed=0, perceptual_weight=weight)
        step = training.make_train_step(G, E, settings, net)
        state, consts = training.initial_state(E, settings), training.train_constants(G, E, net)
        _, metrics[name] = step(state, consts, z, jnp.zeros(()))
    x = G.synthesize(z)
    recon = G.synthesize(E.apply(E.arrays, x))
    lpips = np.asarray(vggm.lpips_distance(vgg.params, vggm.lpips_features(vgg.params, recon),
                                           vggm.lpips_features(vgg.params, x)))
    assert lpips.mean() > 0
    expected = float(metrics["plain"]["pixel"]) + 2.0 / 10.0 * lpips.mean()  # pixel weight 10 (the default)
    assert float(metrics["perceptual"]["pixel"]) == pytest.approx(expected, rel=1e-4)
    assert float(metrics["perceptual"]["mse"]) == pytest.approx(float(metrics["plain"]["mse"]), rel=1e-5)

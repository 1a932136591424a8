"""The torch side of `run.py bench`: reference generators, their runners and torch's matmul peak.

It lives outside the installed package so `ifgan_jax` never imports torch: `benchmarks.references.
load_torch_reference` imports this module by name when it can (torch installed) and otherwise skips the
reference with a note. Every runner maps float32 z codes (N, d) to uint8 NHWC images, the same
output and postprocessing as `Generator.synthesize_uint8`, so the timings compare like for like.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.harness import interleaved_times
from benchmarks.references import REFERENCE_SEED, import_interfacegan, quiet_logger
from ifgan_jax.zoo.wheels import locate_wheel_file

Runner = Callable[[np.ndarray], np.ndarray]


def version_and_threads() -> tuple[str, int]:
    """torch's version and CPU thread count, for the machine description."""
    return torch.__version__, torch.get_num_threads()


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """float32 FLOP/s of an n x n matmul in torch (CPU threads as configured), beside JAX's."""
    a = torch.randn(n, n)
    t = interleaved_times({"mm": lambda: torch.mm(a, a)}, repeats=repeats, min_seconds=0.2)
    return 2 * n**3 / t["mm"]["median_s"]


def to_uint8_nhwc(x: torch.Tensor) -> np.ndarray:
    """[-1, 1] NCHW -> uint8 NHWC on the host, rounded as `synthesize_uint8` does."""
    return torch.clamp((x + 1) * 127.5 + 0.5, 0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def with_one_thread_variants(runners: dict[str, Runner]) -> dict[str, Runner]:
    """`runners` plus a `NAME_1thread` copy of each that runs with torch.set_num_threads(1)."""
    # On a busy machine torch's OpenMP team degrades far more than XLA's pool when cores are oversubscribed
    # (benchmarks/NOTES.md: 84 vs 159 img/s, 2 vs 1 thread, at load 6 on 2 cores): time both, so the headline
    # can use the better torch figure and not flatter JAX.
    def one_thread(run: Runner) -> Runner:
        def wrapped(z: np.ndarray) -> np.ndarray:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return run(z)
            finally:
                torch.set_num_threads(threads)

        return wrapped

    out = dict(runners)
    if torch.get_num_threads() > 1:
        out.update({f"{name}_1thread": one_thread(run) for name, run in runners.items()})
    return out


def dcgan_net(latent_dim: int = 100, device: str | None = None) -> torch.nn.Module:
    """The gan-face-generate wheel's torch Generator with its released weights (eval, frozen; default: GPU if any)."""
    from gan_face_generate.models import Generator as TorchGenerator  # the data wheel: optional, like torch

    path = locate_wheel_file("gan-face-generate", "gan_face_generate/weights.tar")
    net = TorchGenerator(ngpu=0, nc=3, nz=latent_dim, ngf=64)
    # weights_only: the checkpoint is read without running pickled code.
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["netG_state_dict"])
    net.eval().to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def dcgan_runners(latent_dim: int) -> tuple[dict[str, Runner], str | None]:
    """`{"torch": z -> uint8 images}` for the wheel's DCGAN (`dcgan_net`); or no runner and why."""
    try:
        net = dcgan_net(latent_dim)
    except ImportError as err:
        return {}, f"dcgan torch reference skipped: {err}"
    device = next(net.parameters()).device

    def run(z: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return to_uint8_nhwc(net(torch.from_numpy(z).to(device)[:, :, None, None]))

    return {"torch": run}, None


def interfacegan_generator(repo: Path, family: str, resolution: int) -> Any:
    """InterFaceGAN's PGGANGenerator / StyleGANGenerator with its default random init at `resolution`."""
    import_interfacegan(repo, "models")
    settings = importlib.import_module("_interfacegan_models.model_settings")
    settings.USE_CUDA = torch.cuda.is_available()  # its default assumes a GPU
    name = f"ifgan_bench_{family}_{resolution}"
    entry = {"gan_type": family, "latent_space_dim": 512, "resolution": resolution, "min_val": -1.0,
             "max_val": 1.0, "output_channels": 3, "channel_order": "RGB"}
    if family == "pggan":
        entry["fused_scale"] = False
        cls = importlib.import_module("_interfacegan_models.pggan_generator").PGGANGenerator
    else:
        entry.update(w_space_dim=512, fused_scale="auto")
        cls = importlib.import_module("_interfacegan_models.stylegan_generator").StyleGANGenerator
    settings.MODEL_POOL[name] = entry
    torch.manual_seed(REFERENCE_SEED)
    return cls(name, logger=quiet_logger())


def interfacegan_state_dict(gen: Any) -> dict[str, np.ndarray]:
    """The weights of an `interfacegan_generator` as numpy, for the project's converter."""
    return {k: v.detach().cpu().numpy() for k, v in gen.model.state_dict().items()}


def interfacegan_runners(gen: Any, family: str) -> dict[str, Runner]:
    """Two torch references: InterFaceGAN's generate_data.py loop (batch 4) and the whole batch at once."""
    kwargs = {"latent_space_type": "Z"} if family == "stylegan" else {}

    def interfacegan_loop(z: np.ndarray) -> np.ndarray:
        # generate_data.py: preprocess, then easy_synthesize over get_batch_inputs (4 codes at a time).
        codes = gen.preprocess(z, **kwargs)
        return np.concatenate([gen.easy_synthesize(b, **kwargs)["image"] for b in gen.get_batch_inputs(codes)])

    def torch_batched(z: np.ndarray) -> np.ndarray:
        codes = torch.from_numpy(gen.preprocess(z, **kwargs)).to(gen.run_device)
        with torch.no_grad():
            return to_uint8_nhwc(gen.model(codes))

    return {"interfacegan": interfacegan_loop, "torch_batched": torch_batched}

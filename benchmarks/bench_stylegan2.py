"""StyleGAN2 sampling throughput: this port's G(z) beside NVlabs' own G(z) (fp32, CPU 'ref' ops), one process.

The reference is NVlabs' stylegan2-ada-pytorch `training/networks.py` Generator, imported from a checkout
(--nvlabs-repo), config-f at --resolution (channel_base 32768, channel_max 512, 8 mapping layers,
num_fp16_res 4 and conv_clamp 256 as ADA trains it; fp32 forced, which is all its CPU path runs), with random
weights (its own init, noise strengths drawn so the noise inputs count). Its snapshot pickle goes through this
project's converter, so both sides run the same weights; the uint8 outputs are compared before timing. Both
sides map z to uint8 NHWC images on the host (truncation psi 1, const noise): `Generator.synthesize_uint8` vs
`G(z, None, noise_mode='const', force_fp32=True)` + the same rounding. torch is timed with its default threads
and with one thread; the headline ratio uses the faster torch figure (benchmarks/NOTES.md, finding 1).

torch is not a dependency of this project: give the site-packages of a venv that has it with --torch-site
(appended to sys.path, so this project's own packages win), e.g.
    python -m venv /tmp/sg2venv && /tmp/sg2venv/bin/pip install torch==2.13.0 numpy requests
    python -m benchmarks.bench_stylegan2 --nvlabs-repo /tmp/ref/stylegan2-ada-pytorch \\
        --torch-site /tmp/sg2venv/lib/python3.11/site-packages
Without them only the JAX side is timed.
"""

from __future__ import annotations

import argparse
import importlib
import math
import pickle
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from benchmarks.harness import RESULTS, flops_per_image, interleaved_times, matmul_peak, write_results
from converters.nvlabs_pickle import load_nvlabs_pickle
from converters.stylegan2_pickle import convert_generator_module, select_generator
from ifgan_jax.generator import Generator, _uint8_head
from ifgan_jax.models import stylegan2

SEED = 0
Z_DIM = 512
CONFIG_F = dict(mapping_kwargs=dict(num_layers=8),
                synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256))
NOISE_STRENGTH_STD = 0.1  # NVlabs initializes noise strengths to 0; drawn so the noise inputs do something


def import_reference(repo: Path, module: str) -> ModuleType:
    """`module` imported from a reference checkout (first on sys.path while importing), checked to come from it."""
    repo = Path(repo).resolve()
    sys.path.insert(0, str(repo))
    try:
        found = importlib.import_module(module)
    finally:
        sys.path.remove(str(repo))
    if not Path(found.__file__).resolve().is_relative_to(repo):
        raise SystemExit(f"imported {module} from {found.__file__}, not from {repo}")
    return found


def nvlabs_generator(repo: Path, resolution: int) -> Any:
    """NVlabs' Generator (eval, no grad) with its own random init, from a stylegan2-ada-pytorch checkout."""
    import torch  # optional: only this reference needs it

    networks = import_reference(repo, "training.networks")
    torch.manual_seed(SEED)
    G = networks.Generator(z_dim=Z_DIM, w_dim=Z_DIM, c_dim=0, img_resolution=resolution, img_channels=3, **CONFIG_F)
    G = G.eval().requires_grad_(False)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.copy_(torch.randn(()) * NOISE_STRENGTH_STD)
    return G


def torch_runners(G: Any) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """z -> uint8 NHWC with torch's default threads and with one thread."""
    import torch  # optional: only this reference needs it

    def run(z: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = G(torch.from_numpy(z), None, truncation_psi=1, noise_mode="const", force_fp32=True)
            return torch.clamp((x + 1) * 127.5 + 0.5, 0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()

    def one_thread(z: np.ndarray) -> np.ndarray:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return run(z)
        finally:
            torch.set_num_threads(threads)

    return {"torch": run, "torch_1thread": one_thread}


def jax_generator(G_torch: Any, micro_batch: int | None, convert: Callable = convert_generator_module,
                  models: ModuleType = stylegan2) -> Generator:
    """The same weights through this project's converter (`convert`, of the family in `models`) from the snapshot
    pickle a training run writes."""
    data = pickle.dumps({"G_ema": G_torch})
    family, config, params, buffers = convert(select_generator(load_nvlabs_pickle("G_ema", data)))
    return Generator(f"{family}@{config.resolution}", models.architecture(config), params, buffers,
                     micro_batch=micro_batch, config=config)


def random_generator(family: str, models: ModuleType, config: Any, micro_batch: int | None) -> Generator:
    """Without the reference: random normal weights of the shapes `models` gives `config` (timing only)."""
    rng = np.random.default_rng(SEED)
    shapes = models.param_shapes(config)
    params, buffers = ({k: _fill(v, rng) for k, v in tree.items()} for tree in shapes)
    return Generator(f"{family}@{config.resolution}", models.architecture(config), params, buffers,
                     micro_batch=micro_batch, config=config)


def _fill(tree: Any, rng: np.random.Generator) -> Any:
    if isinstance(tree, dict):
        return {k: _fill(v, rng) for k, v in tree.items()}
    return rng.standard_normal(tree.shape).astype(np.float32)


def time_batches(G: Generator, refs: dict[str, Callable[[np.ndarray], np.ndarray]], batch_sizes: Sequence[int], *,
                 repeats: int, peak: float, max_call_s: float = math.inf) -> tuple[list[dict], dict, dict]:
    """Per batch size: uint8 outputs compared, then JAX and `refs` timed interleaved -> (rows, check, skipped).

    The comparison is JAX's and torch's first call (compile included), so it stands in for their warm-up. A batch
    is skipped (recorded with the estimate) when the slowest contender's seconds per image at the last timed
    batch, times the batch, exceed `max_call_s`: a slow reference at 256 px can take minutes per call. `peak`: the
    matmul FLOP/s that `pct_of_matmul_peak` is relative to.
    """
    rows, check, skipped = [], {}, {}
    per_image: dict[str, float] = {}
    for bs in batch_sizes:
        estimate = bs * max(per_image.values(), default=0.0)
        if estimate > max_call_s:
            slowest = max(per_image, key=per_image.get)
            skipped[bs] = {"estimated_call_s": estimate, "slowest": slowest, "max_call_s": max_call_s}
            print(f"batch {bs}: skipped, {slowest} would take ~{estimate:.0f} s per call (--max-call-s {max_call_s})")
            continue
        z = np.random.default_rng(SEED + bs).standard_normal((bs, G.config.z_dim)).astype(np.float32)
        fns = {"jax": lambda z=z: np.asarray(G.synthesize_uint8(z))}
        fns.update({name: (lambda z=z, run=run: run(z)) for name, run in refs.items()})
        first, out = {}, {}
        for name in ("jax", "torch") if refs else ("jax",):
            t = time.perf_counter()
            out[name] = fns[name]()
            first[name] = time.perf_counter() - t
        if refs:
            diff = np.abs(out["jax"].astype(np.int16) - out["torch"].astype(np.int16))
            check[bs] = {"max_abs_uint8_diff": int(diff.max()), "mean_abs_uint8_diff": float(diff.mean())}
        times = interleaved_times(fns, repeats=repeats, first_s=first)
        per_image = {name: t["median_s"] / bs for name, t in times.items()}
        row = {"batch": bs, "micro_batch": G.micro_batch,
               "xla_flops_per_image": flops_per_image(G, _uint8_head, None, bs)["flops_per_item"]}
        for name, t in times.items():
            row[f"{name}_img_per_s"] = bs / t["median_s"]
            row[f"{name}_runs"] = t["runs"]
            row[f"{name}_spread"] = t["spread"]
        row["jax_compile_s"] = max(0.0, times["jax"]["first_s"] - times["jax"]["median_s"])
        if refs:
            best = max(row["torch_img_per_s"], row["torch_1thread_img_per_s"])
            row["ratio_jax_over_best_torch"] = row["jax_img_per_s"] / best
        row["pct_of_matmul_peak"] = 100 * row["jax_img_per_s"] * (row["xla_flops_per_image"] or 0) / peak
        rows.append(row)
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, check.get(bs, ""), flush=True)
    return rows, check, skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nvlabs-repo", type=Path, help="checkout of NVlabs/stylegan2-ada-pytorch (the reference)")
    parser.add_argument("--torch-site", type=Path, help="site-packages of a venv with torch (appended to sys.path)")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch-sizes", default="1,4,16")
    parser.add_argument("--micro-batch", type=int, default=None, help="Generator micro-batch (default: its own)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--name", default="stylegan2_256_cpu")
    args = parser.parse_args()
    if args.torch_site:
        sys.path.append(str(args.torch_site))
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    G_torch = nvlabs_generator(args.nvlabs_repo, args.resolution) if args.nvlabs_repo else None
    G = (jax_generator(G_torch, args.micro_batch) if G_torch is not None else random_generator(
        "stylegan2", stylegan2, stylegan2.Config(resolution=args.resolution, conv_clamp=256.0), args.micro_batch))
    refs = torch_runners(G_torch) if G_torch is not None else {}
    peak = matmul_peak()
    rows, check, _ = time_batches(G, refs, batch_sizes, repeats=args.repeats, peak=peak)
    path = write_results(RESULTS / f"{args.name}.json", {
        "task": "sample", "model": f"stylegan2 config-f @{args.resolution} (random weights)",
        "reference": ("NVlabs stylegan2-ada-pytorch training.networks.Generator, fp32, CPU ref ops"
                      if refs else None),
        "config": dict(CONFIG_F, resolution=args.resolution), "matmul_peak_flops": peak,
        "output_check": check, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

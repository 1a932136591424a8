"""StyleGAN3 T and R sampling throughput: this port's G(z) beside NVlabs' own G(z) (fp32, CPU 'ref' ops), one process.

The reference is NVlabs' stylegan3 `training/networks_stylegan3.py` Generator, imported from a checkout
(--nvlabs-repo), in the two released configurations as its train.py builds them: T (3x3 convs, channel_base
32768, channel_max 512) and R (1x1 convs, radial down-sampling filters, channel base and max doubled), 2 mapping
layers, magnitude_ema_beta from train.py's formula at --batch 32, num_fp16_res and conv_clamp at their defaults
(fp32 forced, which is all its CPU path runs), with its own random init. On CPU tensors NVlabs' `filtered_lrelu`,
`upfirdn2d` and `bias_act` never build their CUDA plugins and run their reference code; the run checks that no
plugin was loaded. The rest is bench_stylegan2's method: the snapshot pickle through this project's converter,
uint8 outputs compared before timing, interleaved timing, torch with its default threads and with one thread, the
headline ratio against the faster torch figure.

The reference's filtered leaky ReLU runs as plain torch ops on the 2x up-sampled activations and takes about a
minute per 256 px image on 2 shared cores, so each contender is timed once per batch by default (--repeats) and
a batch whose slowest contender would take longer than --max-call-s per call is skipped (recorded with the estimate).
torch is not a dependency of this project: give the site-packages of a venv that has it, e.g.
    python -m benchmarks.bench_stylegan3 --nvlabs-repo /tmp/ref/NVlabs+stylegan3 \\
        --torch-site /tmp/sg2venv/lib/python3.11/site-packages
Without them only the JAX side is timed (random normal weights of the same shapes) and written to jax_only.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks.bench_stylegan2 import (
    SEED,
    Z_DIM,
    import_reference,
    jax_generator,
    random_generator,
    time_batches,
    torch_runners,
)
from benchmarks.harness import RESULTS, load_average, matmul_peak, write_results
from converters.stylegan3_pickle import FAMILY, convert_generator_module
from ifgan_jax.models import stylegan3

OUT_DIR = RESULTS / "stylegan3_cpu_2core"
MAPPING_LAYERS = 2  # train.py's --map-depth default for the stylegan3 configs
TRAIN_BATCH = 32  # the --batch of NVlabs' FFHQ-U runs; only sets the (unused at inference) magnitude EMA rate
MAGNITUDE_EMA_BETA = 0.5 ** (TRAIN_BATCH / 20e3)  # train.py's formula
# NVlabs kwargs per config (train.py's --cfg stylegan3-t / stylegan3-r); the same names in stylegan3.Config.
CONFIGS: dict[str, dict[str, Any]] = {
    "t": dict(channel_base=32768, channel_max=512),
    "r": dict(channel_base=65536, channel_max=1024, conv_kernel=1, use_radial_filters=True),
}
REFERENCE_OPS = ("filtered_lrelu", "upfirdn2d", "bias_act")  # NVlabs' custom ops with a CUDA plugin
MAX_CALL_S = 120.0
DEFAULT_REPEATS = 1


def nvlabs_generator(networks: ModuleType, config: str, resolution: int) -> Any:
    """NVlabs' StyleGAN3 Generator for `config` ("t" or "r"), eval and no grad, with its own random init."""
    import torch  # optional: only this reference needs it

    torch.manual_seed(SEED)
    G = networks.Generator(z_dim=Z_DIM, w_dim=Z_DIM, c_dim=0, img_resolution=resolution, img_channels=3,
                           mapping_kwargs=dict(num_layers=MAPPING_LAYERS), magnitude_ema_beta=MAGNITUDE_EMA_BETA,
                           **CONFIGS[config])
    return G.eval().requires_grad_(False)


def plugins_loaded() -> dict[str, bool]:
    """Whether each of NVlabs' custom ops has built its CUDA plugin (after the run: they load on first use)."""
    return {name: getattr(sys.modules.get(f"torch_utils.ops.{name}"), "_plugin", None) is not None
            for name in REFERENCE_OPS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nvlabs-repo", type=Path, help="checkout of NVlabs/stylegan3 (the reference)")
    parser.add_argument("--torch-site", type=Path, help="site-packages of a venv with torch (appended to sys.path)")
    parser.add_argument("--configs", default="t,r", help="comma-separated: t, r")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch-sizes", default="1,4,16")
    parser.add_argument("--micro-batch", type=int, default=None, help="Generator micro-batch (default: its own)")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="timed calls per contender and batch")
    parser.add_argument("--max-call-s", type=float, default=MAX_CALL_S,
                        help="skip a batch whose slowest contender would take longer per call (seconds)")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="JSON file (default: benchmarks/results/stylegan3_cpu_2core/results.json, or "
                             "jax_only.json there without the reference)")
    args = parser.parse_args()
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if not configs or set(configs) - set(CONFIGS):
        parser.error(f"--configs: expected a comma-separated subset of {sorted(CONFIGS)}, got {args.configs!r}")
    if args.torch_site and not args.nvlabs_repo:
        parser.error("--torch-site: the reference also needs --nvlabs-repo (a checkout of NVlabs/stylegan3)")
    if args.torch_site:
        sys.path.append(str(args.torch_site))
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    networks = import_reference(args.nvlabs_repo, "training.networks_stylegan3") if args.nvlabs_repo else None
    start, peak = time.perf_counter(), matmul_peak()
    results = {}
    for name in configs:
        print(f"StyleGAN3-{name.upper()} @{args.resolution}, load average {load_average()}", flush=True)
        G_torch = nvlabs_generator(networks, name, args.resolution) if networks else None
        G = (jax_generator(G_torch, args.micro_batch, convert_generator_module, stylegan3) if G_torch is not None
             else random_generator(FAMILY, stylegan3, stylegan3.Config(
                 resolution=args.resolution, mapping_layers=MAPPING_LAYERS, **CONFIGS[name]), args.micro_batch))
        refs = torch_runners(G_torch) if G_torch is not None else {}
        rows, check, skipped = time_batches(G, refs, batch_sizes, repeats=args.repeats, peak=peak,
                                            max_call_s=args.max_call_s)
        results[name] = {"nvlabs_kwargs": dict(CONFIGS[name], mapping_layers=MAPPING_LAYERS,
                                               magnitude_ema_beta=MAGNITUDE_EMA_BETA),
                         "output_check": check, "rows": rows, "skipped": skipped}
    loaded = plugins_loaded() if networks else None
    if loaded and any(loaded.values()):
        raise SystemExit(f"NVlabs' CUDA plugins were loaded ({loaded}): the reference did not run its CPU ref ops")
    output = args.output or OUT_DIR / ("results.json" if networks else "jax_only.json")
    path = write_results(output, {
        "task": "sample", "model": f"stylegan3 T / R @{args.resolution} (random weights)",
        "reference": ("NVlabs stylegan3 training.networks_stylegan3.Generator, fp32, CPU ref ops"
                      if networks else None),
        "reference_cuda_plugins_loaded": loaded, "resolution": args.resolution, "repeats": args.repeats,
        "max_call_s": args.max_call_s, "matmul_peak_flops": peak, "wall_s": time.perf_counter() - start,
        "configs": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""Inversion throughput and quality on dcgan_digiface: one JAX batch vs per-image loops (JAX and torch).

    python -m benchmarks.bench_invert                      # JAX parts only
    python -m benchmarks.bench_invert                      # with torch installed: adds the per-image torch loop
    ... -m benchmarks.bench_invert --host-devices 2         # JAX on 2 forced host devices (one per core)

Targets are DCGAN images of known codes (seed 2024, a stream no pool or init draws from), quantized to
uint8 as if read from PNG. Every loop optimizes the same objective for the same number of steps: pixel
MSE, Adam with NVlabs' lr ramp and the sphere projection, from the same best-of-K codes. Images/s
excludes compilation (each contender's first call is an untimed warm-up); the batch figure includes the
best-of-K init. Throughput is timed in interleaved rounds (`benchmarks.harness.interleaved_times`: the cores
are shared, and load drifts 2x within minutes) at --timing-steps; the quality run
(mean/min PSNR of `invert`'s defaults) runs the full --steps and reports its own rate too.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

from benchmarks.harness import RESULTS, interleaved_times, load_average, write_results
from benchmarks.references import load_torch_reference
from ifgan_jax.generator import load_generator
from ifgan_jax.inversion import (
    CPU_MICRO_BATCH,
    DEFAULT_INIT,
    DEFAULT_LR,
    LR_RAMPDOWN,
    LR_RAMPUP,
    check_targets,
    initial_codes,
    invert,
)

NOTES = [
    "Throughput rounds run at --timing-steps (250), not 1000: the per-step cost does not depend on the step "
    "count, and three 1000-step contenders x 3 rounds would take over an hour on these 2 shared cores. "
    "quality.images_per_s is the rate of one uninterrupted 1000-step batch run.",
    "jax_per_image runs one image per call with micro_batch=1 (the fastest way to invert one "
    "image at a time here). The library's default pads a lone image to a whole micro-batch of 16 so that its "
    "result is bit-identical to the same image inside any batch (tests/test_invert.py); "
    "max_code_diff_vs_batch compares the per-image loop's codes, made at another shape, with the batch's: "
    "float rounding differs by shape, and hundreds of Adam steps amplify it into a nearby optimum.",
]


def torch_invert_one(net, target_nhwc: np.ndarray, z0: np.ndarray, steps: int, lr: float) -> tuple[np.ndarray, float]:
    """Per-image torch loop: Adam on z, NVlabs' lr ramp, pixel MSE, sphere projection; returns (z, mse)."""
    import torch  # only here: the caller has checked that the torch reference imports

    target = torch.from_numpy(np.ascontiguousarray(target_nhwc.transpose(2, 0, 1)[None]))
    radius = math.sqrt(z0.size)
    z = torch.tensor(z0[None, :, None, None] * (radius / np.linalg.norm(z0)), requires_grad=True)
    opt = torch.optim.Adam([z], lr=lr, betas=(0.9, 0.999), eps=1e-8)
    for step in range(steps):
        t = step / steps
        ramp = min(1.0, (1.0 - t) / LR_RAMPDOWN)
        ramp = (0.5 - 0.5 * math.cos(ramp * math.pi)) * min(1.0, t / LR_RAMPUP)
        for group in opt.param_groups:
            group["lr"] = lr * ramp
        opt.zero_grad(set_to_none=True)
        loss = torch.mean((net(z) - target) ** 2)
        loss.backward()
        opt.step()
        with torch.no_grad():  # the sphere projection `invert` applies to Z codes by default
            z.mul_(radius / z.norm())
    with torch.no_grad():
        mse = float(torch.mean((net(z).clamp(-1, 1) - target) ** 2))
    return z.detach().numpy()[0, :, 0, 0], mse


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=32, help="images in the batch")
    parser.add_argument("--steps", type=int, default=1000, help="steps of the quality run (the defaults)")
    parser.add_argument("--timing-steps", type=int, default=250,
                        help="steps of the interleaved throughput rounds (per-step cost does not depend on it)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-image", type=int, default=2, help="images per round in the per-image loops")
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--out", default=None, help="results file (default results/invert_cpu[_Ndev].json)")
    parser.add_argument("--host-devices", type=int, default=1,
                        help="run JAX on N forced CPU devices (XLA_FLAGS; measured 16%% faster with 2 on 2 cores)")
    args = parser.parse_args()
    flag = f"--xla_force_host_platform_device_count={args.host_devices}"
    if args.host_devices > 1 and flag not in os.environ.get("XLA_FLAGS", ""):
        # jax reads XLA_FLAGS once, at import: restart this script with the flag set.
        env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()}
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks.bench_invert", *sys.argv[1:]], env)
    if args.out is None:
        suffix = f"_{args.host_devices}dev" if args.host_devices > 1 else ""
        args.out = str(RESULTS / f"invert_cpu{suffix}.json")

    G = load_generator("dcgan_digiface")
    z_true = G.sample_latents(seed=2024, start=0, count=args.count)
    targets_u8 = np.asarray(G.synthesize_uint8(z_true))
    targets = check_targets(G, targets_u8)
    init, lr = DEFAULT_INIT["z"], DEFAULT_LR["z"]
    k = min(args.per_image, args.count)
    z0 = initial_codes(G, targets[:k], "z", init, 0)
    steps = args.timing_steps
    report: dict = {"notes": NOTES, "load_average_start": load_average(),
                    "settings": {"count": args.count, "quality_steps": args.steps, "timing_steps": steps,
                                 "rounds": args.rounds, "per_image_count_per_round": k, "init": init, "lr": lr,
                                 "loss": "pixel MSE", "sphere": True, "micro_batch": CPU_MICRO_BATCH,
                                 "devices": G.num_devices}}

    # 1. Throughput: contenders timed round-robin (order reversed every round) so they share the load.
    codes: dict[str, np.ndarray] = {}

    def jax_batch() -> None:
        codes["jax_batch"] = invert(G, targets_u8, steps=steps, batch_size=args.count).codes

    def jax_single() -> None:
        codes["jax_per_image"] = np.stack([invert(G, targets_u8[i : i + 1], steps=steps, batch_size=1, micro_batch=1)
                                           .codes[0] for i in range(k)])

    contenders = {"jax_batch": jax_batch, "jax_per_image": jax_single}
    images = {"jax_batch": args.count, "jax_per_image": k, "torch_per_image": k}
    reference, why_not = (None, "--skip-torch") if args.skip_torch else load_torch_reference()
    if reference is None:
        report["torch_per_image"] = f"skipped: {why_not}"
    else:
        net = reference.dcgan_net(device="cpu")  # torch_invert_one keeps its tensors on the CPU

        def torch_single() -> None:
            for i in range(k):
                torch_invert_one(net, targets[i], z0[i], steps, lr)

        contenders["torch_per_image"] = torch_single
    # Long calls: one per turn, `--rounds` timed rounds after an untimed warm-up call each (the compiles).
    timings = interleaved_times(contenders, repeats=args.rounds, min_seconds=0.0, max_seconds=math.inf)
    for name, t in timings.items():
        rates = [images[name] / seconds for seconds in t["times"]]
        report[name] = {"images_per_s": images[name] / t["median_s"], "rounds": [round(v, 5) for v in rates],
                        "ms_per_image_step": 1e3 * t["median_s"] / (images[name] * steps)}
        print(json.dumps({name: report[name]["images_per_s"], "load": load_average()}), flush=True)
    diff = np.abs(codes["jax_per_image"] - codes["jax_batch"][:k]).max()
    report["jax_per_image"]["max_code_diff_vs_batch"] = float(diff)
    for name in ("jax_per_image", "torch_per_image"):
        if isinstance(report.get(name), dict):
            report[f"speedup_batch_vs_{name}"] = report["jax_batch"]["images_per_s"] / report[name]["images_per_s"]

    # 2. Quality (and a long-run rate) of `invert`'s defaults on all images.
    res = invert(G, targets_u8, batch_size=args.count, steps=args.steps)
    run_s = res.timings["run_s"] + res.timings["init_s"]
    report["quality"] = {"steps": args.steps, "mean_psnr": float(res.psnr.mean()), "min_psnr": float(res.psnr.min()),
                         "median_psnr": float(np.median(res.psnr)), "images_per_s": args.count / run_s,
                         "compile_s": res.timings["compile_s"], "psnr": [round(float(p), 2) for p in res.psnr]}
    print(json.dumps({"quality": report["quality"]}), flush=True)
    report["load_average_end"] = load_average()
    print(f"wrote {write_results(Path(args.out), report)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

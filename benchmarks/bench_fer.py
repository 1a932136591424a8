"""FER classifier throughput on the CPU: depthwise convs as shifted multiply-adds vs lax grouped conv.

Run from the repository root: `python -m benchmarks.bench_fer` (writes benchmarks/results/fer_cpu.json).
Timed: the whole predictor on RGB [-1, 1] 64x64 images (uint8 quantization, gray, network), jitted.
"""

from __future__ import annotations

import os

# The figure is a CPU one even on a machine with an accelerator.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.harness import RESULTS, interleaved_times, write_results  # noqa: E402
from ifgan_jax import predictors  # noqa: E402


def measure(depthwise: str, batch: int, chunk: int | None, repeats: int) -> dict:
    """images/s of the FER predictor with the given depthwise mode and call chunking."""
    predictor = predictors.fer_predictor(predictors.load_fer(depthwise=depthwise))
    images = jax.numpy.asarray(np.random.default_rng(0).uniform(-1, 1, (batch, 64, 64, 3)).astype(np.float32))
    t = interleaved_times({"fer": lambda: predictor(images, batch_size=chunk).block_until_ready()}, repeats=repeats)
    seconds = t["fer"]["median_s"]
    return {
        "depthwise": depthwise,
        "batch": batch,
        "chunk": chunk,
        "img_per_s": batch / seconds,
        "ms_per_batch": 1e3 * seconds,
        "compile_s": max(0.0, t["fer"]["first_s"] - seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--chunks", default="0,100", help="batch_size values for the call; 0 = whole batch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--name", default="fer_cpu")
    args = parser.parse_args()
    chunks = [int(c) or None for c in args.chunks.split(",")]
    rows = []
    for depthwise in ("shifted", "grouped"):
        for chunk in chunks:
            row = measure(depthwise, args.batch, chunk, args.repeats)
            rows.append(row)
            print(
                f"depthwise={depthwise:8s} chunk={chunk or args.batch:4d}  {row['img_per_s']:8.1f} img/s  "
                f"({row['ms_per_batch']:.0f} ms / {args.batch}, compile {row['compile_s']:.1f} s)"
            )
    best = {
        mode: max(r["img_per_s"] for r in rows if r["depthwise"] == mode) for mode in ("shifted", "grouped")
    }
    print(f"shifted / grouped speedup: {best['shifted'] / best['grouped']:.1f}x")
    payload = {
        "benchmark": "FER mini-Xception predictor (preprocess + network), float32, jitted",
        "rows": rows,
        "speedup_shifted_over_grouped": best["shifted"] / best["grouped"],
    }
    print(f"wrote {write_results(RESULTS / (args.name + '.json'), payload)}")


if __name__ == "__main__":
    main()

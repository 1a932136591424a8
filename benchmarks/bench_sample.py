"""DCGAN sampling throughput: JAX (synthesize + uint8 + host transfer) beside the wheel's torch model.

From the repository root, with an interpreter that has torch for the side-by-side figures:
`/path/to/venv-with-torch/bin/python -m benchmarks.bench_sample`; without torch the reference is skipped.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.common import matmul_peak_flops, median_time, write_results


def torch_reference(batch_sizes: list[int], repeats: int) -> dict[int, float] | None:
    """images/s of the wheel's torch Generator (eval, no_grad, uint8 postprocess) per batch size."""
    try:
        from benchmarks import torch_reference
    except ImportError:
        return None
    run = torch_reference.dcgan_runners(100)[0].get("torch")
    if run is None:
        return None
    rates = {}
    for bs in batch_sizes:
        z = np.random.default_rng(bs).standard_normal((bs, 100)).astype(np.float32)
        run(z)
        rates[bs] = bs / median_time(lambda z=z: run(z), repeats=repeats)
    return rates


def jax_rates(batch_sizes: list[int], micro_batches: list[int], repeats: int) -> list[dict]:
    import jax

    import ifgan_jax
    from ifgan_jax.generator import _uint8_head

    rows = []
    for micro in micro_batches:
        G = ifgan_jax.load_generator("dcgan_digiface", micro_batch=micro, max_batch=max(batch_sizes))
        for bs in batch_sizes:
            z = G.sample_latents(seed=0, start=0, count=bs)
            t = time.perf_counter()
            np.asarray(G.synthesize_uint8(z))
            compile_s = time.perf_counter() - t
            seconds = median_time(lambda z=z, G=G: np.asarray(G.synthesize_uint8(z)), repeats=repeats)
            lowered = G._forward.lower(G.params, G.buffers, None, jax.numpy.asarray(z), None, space="z",
                                       head=_uint8_head)
            cost = lowered.compile().cost_analysis()
            cost = cost[0] if isinstance(cost, list) else cost
            flops = float(cost.get("flops", 0.0)) if cost else 0.0
            rows.append({"micro_batch": micro, "batch": bs, "img_per_s": bs / seconds,
                         "ms_per_batch": 1e3 * seconds, "compile_s": compile_s,
                         "xla_flops_per_image": flops / bs if flops else None})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="64,256")
    parser.add_argument("--micro-batches", default="0,8,16,32")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--name", default="sample_dcgan_cpu")
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    micro = [int(m) for m in args.micro_batches.split(",")]
    peak = matmul_peak_flops()
    ref = torch_reference(batch_sizes, args.repeats)
    rows = jax_rates(batch_sizes, micro, args.repeats)
    ref_after = torch_reference(batch_sizes, args.repeats)  # measured again: the machine is noisy
    model_flops = 0.21e9  # multiply-adds x 2 of the DCGAN per image (ConvTranspose layers)
    summary = {}
    for bs in batch_sizes:
        best = max((r for r in rows if r["batch"] == bs), key=lambda r: r["img_per_s"])
        entry = {"jax_img_per_s": best["img_per_s"], "jax_micro_batch": best["micro_batch"],
                 "pct_of_matmul_peak": 100 * best["img_per_s"] * model_flops / peak}
        if ref:
            torch_rate = (ref[bs] + ref_after[bs]) / 2
            entry.update(torch_img_per_s=torch_rate, ratio_jax_over_torch=best["img_per_s"] / torch_rate)
        summary[bs] = entry
    path = write_results(args.name, {"task": "sample", "model": "dcgan_digiface", "matmul_peak_flops": peak,
                                     "model_flops_per_image": model_flops, "jax": rows,
                                     "torch_img_per_s": {"before": ref, "after": ref_after},
                                     "summary": summary})
    for bs, entry in summary.items():
        print(bs, {k: round(v, 3) if isinstance(v, float) else v for k, v in entry.items()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

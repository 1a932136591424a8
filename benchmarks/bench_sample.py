"""DCGAN sampling throughput: JAX (synthesize + uint8 + host transfer) beside the wheel's torch model.

From the repository root, with an interpreter that has torch for the side-by-side figures:
`/path/to/venv-with-torch/bin/python -m benchmarks.bench_sample`; without torch the reference is skipped.
"""

from __future__ import annotations

import argparse

import numpy as np

import ifgan_jax
from benchmarks.harness import RESULTS, flops_per_image, interleaved_times, matmul_peak, write_results
from benchmarks.references import load_torch_reference
from ifgan_jax.generator import _uint8_head


def torch_reference(batch_sizes: list[int], repeats: int) -> dict[int, float] | None:
    """images/s of the wheel's torch Generator (eval, no_grad, uint8 postprocess) per batch size."""
    reference, _ = load_torch_reference()
    if reference is None:
        return None
    run = reference.dcgan_runners(100)[0].get("torch")
    if run is None:
        return None
    rates = {}
    for bs in batch_sizes:
        z = np.random.default_rng(bs).standard_normal((bs, 100)).astype(np.float32)
        t = interleaved_times({"torch": lambda z=z: run(z)}, repeats=repeats)["torch"]
        rates[bs] = bs / t["median_s"]
    return rates


def jax_rates(batch_sizes: list[int], micro_batches: list[int], repeats: int) -> list[dict]:
    rows = []
    for micro in micro_batches:
        G = ifgan_jax.load_generator("dcgan_digiface", micro_batch=micro, max_batch=max(batch_sizes))
        for bs in batch_sizes:
            z = G.sample_latents(seed=0, start=0, count=bs)
            t = interleaved_times({"jax": lambda z=z, G=G: np.asarray(G.synthesize_uint8(z))}, repeats=repeats)["jax"]
            rows.append({"micro_batch": micro, "batch": bs, "img_per_s": bs / t["median_s"],
                         "ms_per_batch": 1e3 * t["median_s"], "compile_s": max(0.0, t["first_s"] - t["median_s"]),
                         "xla_flops_per_image": flops_per_image(G, _uint8_head, None, bs)["flops_per_item"]})
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
    peak = matmul_peak()
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
    path = write_results(RESULTS / f"{args.name}.json",
                         {"task": "sample", "model": "dcgan_digiface", "matmul_peak_flops": peak,
                          "model_flops_per_image": model_flops, "jax": rows,
                          "torch_img_per_s": {"before": ref, "after": ref_after}, "summary": summary})
    for bs, entry in summary.items():
        print(bs, {k: round(v, 3) if isinstance(v, float) else v for k, v in entry.items()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

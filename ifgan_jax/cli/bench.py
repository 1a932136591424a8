"""`bench`: throughput of sample/score/edit/boundary/invert, JAX beside the torch reference.

The suite is the repository's `benchmarks/` package (benchmarks/suite.py), which the installed wheel does not
carry: `python run.py bench` runs it from a checkout; an installed `ifgan bench` says so and exits 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ifgan_jax.errors import InputError
from ifgan_jax.zoo.registry import DEFAULT_MODEL


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark every task (JAX vs torch reference), write results.json/report.md")
    p.add_argument("-m", "--model", dest="models", nargs="+", default=[DEFAULT_MODEL], metavar="MODEL",
                   help="registry names, converted model dirs, or FAMILY@RES (pggan@64: random weights) "
                        "(default dcgan_digiface)")
    p.add_argument("--tasks", default="sample,score,edit,boundary,invert", help="comma-separated subset")
    p.add_argument("--batch-sizes", default="1,4,16,64,256", help="comma-separated")
    p.add_argument("--devices", type=int, nargs="+", default=None, metavar="N",
                   help="device counts for the scaling run (default 1 2 on CPU, powers of two up to all on GPU)")
    p.add_argument("--scaling-batch", type=int, default=None, metavar="B",
                   help="per-device batch of the scaling run (default 64 on CPU, 256 otherwise; small for 1024 px)")
    ref = p.add_mutually_exclusive_group()
    ref.add_argument("--reference-torch", dest="reference", action="store_const", const="on", default="auto",
                     help="require the torch reference (default: run it when torch imports)")
    ref.add_argument("--no-reference", dest="reference", action="store_const", const="off",
                     help="JAX only")
    p.add_argument("--interfacegan-repo", type=Path, default=None, metavar="PATH",
                   help="InterFaceGAN checkout: torch PGGAN/StyleGAN modules and its train_boundary")
    p.add_argument("--matmul-precision", default="", metavar="P[,P...]",
                   help="sample task: also time JAX under jax.default_matmul_precision P (bfloat16, tensorfloat32, "
                        "float32, ...) and report speed and image error against full float32")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median)")
    p.add_argument("--predictor", default=None, help="score task predictor (default fer, else stats)")
    p.add_argument("--boundary-size", default="8,50000,512", metavar="A,N,D",
                   help="boundary task: attributes, samples, dimensions")
    p.add_argument("--invert-steps", type=int, default=10, help="optimizer steps in the invert task")
    p.add_argument("-o", "--out", required=True, help="output directory")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        # Lazy, and outside the package: the suite lives in the repository's benchmarks/, not in the wheel.
        from benchmarks.config import config_from_flags
        from benchmarks.suite import run_bench
    except ModuleNotFoundError as err:
        if err.name not in ("benchmarks", "benchmarks.config", "benchmarks.suite"):
            raise
        raise InputError("bench runs from a repository checkout, not the installed package: "
                         "`python run.py bench ...` in the ifgan-jax repository") from None
    config = config_from_flags(
        out=args.out, models=args.models, tasks=args.tasks, batch_sizes=args.batch_sizes, devices=args.devices,
        scaling_batch=args.scaling_batch, reference=args.reference, interfacegan_repo=args.interfacegan_repo,
        repeats=args.repeats, predictor=args.predictor, boundary_size=args.boundary_size,
        invert_steps=args.invert_steps, matmul_precision=args.matmul_precision, verbose=not args.quiet)
    payload = run_bench(config)
    print(f"wrote {Path(args.out) / 'results.json'} and report.md ({len(payload['rows'])} rows)")
    for r in payload["headline"]:
        print(f"  {r['model']} {r['task']} {r['name']} @ {r['batch']}: {r['value']:.2f}x")
    return 0

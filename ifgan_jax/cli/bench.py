"""`bench`: throughput of sample/score/edit/boundary/invert, JAX beside the torch reference (ifgan_jax.bench)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ifgan_jax.errors import InputError


def _int_list(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise InputError(f"{what} must be positive integers, got {text!r}")
    return values


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark every task (JAX vs torch reference), write results.json/report.md")
    p.add_argument("-m", "--model", dest="models", nargs="+", default=["dcgan_digiface"], metavar="MODEL",
                   help="registry names, converted model dirs, or FAMILY@RES (pggan@64: random weights) "
                        "(default dcgan_digiface)")
    p.add_argument("--tasks", default="sample,score,edit,boundary,invert", help="comma-separated subset")
    p.add_argument("--batch-sizes", default="1,4,16,64,256", help="comma-separated (default 1,4,16,64,256)")
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
    p.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median; default 5)")
    p.add_argument("--predictor", default=None, help="score task predictor (default fer, else stats)")
    p.add_argument("--boundary-size", default="8,50000,512", metavar="A,N,D",
                   help="boundary task: attributes, samples, dimensions (default 8,50000,512)")
    p.add_argument("--invert-steps", type=int, default=10, help="optimizer steps in the invert task (default 10)")
    p.add_argument("-o", "--out", required=True, help="output directory")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ifgan_jax.bench import BenchConfig, parse_precisions, run_bench

    sizes = _int_list(args.boundary_size, "--boundary-size")
    if len(sizes) != 3:
        raise InputError(f"--boundary-size takes A,N,D (attributes, samples, dims), got {args.boundary_size!r}")
    attributes, samples, dim = sizes
    if args.scaling_batch is not None and args.scaling_batch < 1:
        raise InputError(f"--scaling-batch must be >= 1, got {args.scaling_batch}")
    config = BenchConfig(
        out_dir=Path(args.out),
        models=tuple(args.models),
        tasks=tuple(t.strip() for t in args.tasks.split(",") if t.strip()),
        batch_sizes=_int_list(args.batch_sizes, "--batch-sizes"),
        devices=tuple(args.devices) if args.devices else None,
        scaling_batch=args.scaling_batch,
        reference=args.reference,
        interfacegan_repo=args.interfacegan_repo,
        repeats=args.repeats,
        predictor=args.predictor,
        boundary_attributes=attributes,
        boundary_samples=samples,
        boundary_dim=dim,
        invert_steps=args.invert_steps,
        matmul_precisions=parse_precisions(args.matmul_precision),
        verbose=not args.quiet,
    )
    payload = run_bench(config)
    print(f"wrote {Path(args.out) / 'results.json'} and report.md ({len(payload['rows'])} rows)")
    for r in payload["headline"]:
        print(f"  {r['model']} {r['task']} {r['name']} @ {r['batch']}: {r['value']:.2f}x")
    return 0

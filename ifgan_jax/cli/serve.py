"""`serve`: the interactive editor, a local web page with one slider per boundary."""

from __future__ import annotations

import argparse

from ifgan_jax.cli.common import add_model_args, model_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="interactive editor: a local web page with one slider per boundary")
    add_model_args(p, noise=True)
    p.add_argument("-b", "--boundary", action="append", default=None,
                   help="boundary .npy (1, d), one slider each; repeatable (default: the model's shipped ones)")
    # The defaults live in jobs/serve/ (None here), so building the parser imports no job.
    p.add_argument("--port", type=int, default=None, help="port to listen on (default 8080; 0: any free port)")
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--predictor", default=None,
                   help="scores shown beside the image: predictor names as `score` takes them (default: the demo's "
                        "predictor, FER expressions, age, gender, brightness and pose; 'none' hides them)")
    p.add_argument("--space", type=str.lower, choices=("z", "w"), default=None,
                   help="the codes the sliders move: z, or w for StyleGAN models (boundaries trained in W) "
                        "(default z)")
    p.add_argument("--invert-steps", type=int, default=None,
                   help="optimizer steps of a photo's inversion (default 50 after the model's encoder, else 200)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ifgan_jax.jobs import serve

    return serve.run(boundary_paths=args.boundary, host=args.host, port=args.port, predictor=args.predictor,
                     invert_steps=args.invert_steps, space=args.space, **model_options(args))

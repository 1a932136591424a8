"""`models`: the registry, and whether each model's weights are on this machine."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the registered models and where their weights come from")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ifgan_jax.zoo.cache import weights_status
    from ifgan_jax.zoo.registry import DEFAULT_MODEL, MODELS

    for entry in MODELS.values():
        origin, found = weights_status(entry)
        default = " (default)" if entry.name == DEFAULT_MODEL else ""
        print(f"{entry.name}{default}: {entry.family} {entry.resolution}px, spaces {','.join(entry.spaces)}, "
              f"latent {entry.latent_dim}; weights: {origin}; {'present: ' + found if found else 'not present'}")
    return 0

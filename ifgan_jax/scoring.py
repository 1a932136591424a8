"""Attribute scores for codes, with synthesis and scoring fused into one jitted step per batch."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax

from ifgan_jax.generator import Generator, postprocess
from ifgan_jax.predictors import Predictor


def _score_head(apply: Callable, with_images: bool, params: Any, images: jax.Array) -> Any:
    scores = apply(params, images)
    if scores.ndim == 1:
        scores = scores[:, None]
    return {"images": postprocess(images), "scores": scores} if with_images else {"scores": scores}


def make_score_head(predictor: Predictor, *, with_images: bool) -> Callable:
    """A head for `Generator.synthesize_with`; build it once per job (it keys the jit cache)."""
    if not predictor.jit:
        raise ValueError(f"predictor {predictor.name!r} is not traceable; score saved images instead")
    return functools.partial(_score_head, predictor.apply, with_images)


def score_codes(G: Generator, codes: Any, predictor: Predictor, *, space: str = "z", batch_size: int = 256,
                head: Callable | None = None) -> jax.Array:
    """Scores (N, K) of the images synthesized from `codes`, without materializing the images."""
    head = head or make_score_head(predictor, with_images=False)
    outs = [G.synthesize_with(codes[i : i + batch_size], head, predictor.params, space)["scores"]
            for i in range(0, len(codes), batch_size)]
    return jax.numpy.concatenate(outs) if len(outs) > 1 else outs[0]

"""The paper's analyses of attribute scores and boundaries (InterFaceGAN, Shen et al., CVPR 2020, Sec. 3-4).

* `correlation`: Pearson correlation of the attribute scores over samples (the attribute correlation analysis);
* `cosine_matrix`: cosine similarity of every pair of trained boundaries;
* `edit_scores` / `rescoring`: fresh samples moved along each boundary to -D and +D in absolute mode, scored
  again; `rescoring[b, a]` = mean score_a at +D minus at -D (the re-scoring analysis);
* `choose_pairs` / `parse_pairs` / `conditioned`: conditional manipulation, the primal boundary made
  orthogonal to the condition's (`project_boundary`), so an edit of b leaves a alone.

Everything computes through the library (`edit_codes`, `score_codes`, `project_boundary`); the `analyze` job
and the demo write the results.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from ifgan_jax.boundary import project_boundary
from ifgan_jax.edit import edit_codes
from ifgan_jax.errors import InputError
from ifgan_jax.generator import Generator
from ifgan_jax.predictors import Predictor
from ifgan_jax.scoring import make_score_head, score_codes

__all__ = [
    "DISTANCE", "PAIR_SEPARATOR", "choose_pairs", "complement_columns", "conditioned", "correlation",
    "cosine_matrix", "edit_scores", "pair_name", "parse_pairs", "rescoring",
]

DISTANCE = 3.0  # the paper's re-scoring moves every sample to -3 and +3 from the hyperplane
PAIR_SEPARATOR = "|"  # "b|a": edit along b, conditioned on a (a kept fixed)


def complement_columns(scores: np.ndarray, labels: Sequence[str], *, tol: float = 1e-4) -> dict[str, str]:
    """Columns that are 1 minus a later column (a two-class softmax, like gender's "female" = 1 - "male").

    Returns {dropped: kept}: such a column would train the exact opposite boundary and add nothing.
    """
    s = np.asarray(scores, np.float64)
    found: dict[str, str] = {}
    for i, name in enumerate(labels):
        for j in range(i + 1, len(labels)):
            if labels[j] not in found and np.all(np.abs(s[:, i] + s[:, j] - 1.0) <= tol):
                found[name] = labels[j]
                break
    return found


def correlation(scores: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """(K, K) Pearson correlation of the score columns over samples; InputError names a constant column."""
    s = np.asarray(scores, np.float64)
    if s.ndim != 2 or s.shape[1] != len(labels):
        raise InputError(f"scores of shape {s.shape} do not have one column per attribute {list(labels)}")
    if s.shape[0] < 2:
        raise InputError(f"a correlation needs at least 2 samples, got {s.shape[0]}")
    std = s.std(axis=0)
    if (std == 0).any():
        raise InputError(f"attribute {labels[int(np.flatnonzero(std == 0)[0])]!r} has the same score on every sample")
    return np.corrcoef(s, rowvar=False)


def cosine_matrix(boundaries: np.ndarray) -> np.ndarray:
    """(B, B) cosine similarity of boundaries (B, d), computed in float64."""
    b = np.asarray(boundaries, np.float64).reshape(len(boundaries), -1)
    unit = b / np.linalg.norm(b, axis=1, keepdims=True)
    return unit @ unit.T


def edit_scores(G: Generator, codes: np.ndarray, boundaries: np.ndarray, predictor: Predictor, *,
                distances: Sequence[float] = (-DISTANCE, DISTANCE), batch_size: int = 256,
                head: Any = None, with_images: bool = False) -> Any:
    """Scores (M, B, S, K) of every code moved along every boundary to every distance (absolute mode).

    The edits are one vmapped `edit_codes` call, the images synthesized and scored in one fused pass per
    batch (`score_codes`). with_images=True returns (scores, uint8 images (M, B, S, H, W, 3)) instead.
    """
    b = np.asarray(boundaries, np.float32).reshape(-1, G.latent_dim)
    dist = jnp.asarray(distances, jnp.float32)
    edited = edit_codes(jnp.asarray(codes, jnp.float32), b, dist, mode="absolute")
    flat = edited.reshape(-1, G.latent_dim)
    shape = (len(codes), b.shape[0], len(distances))
    if not with_images:
        scores = score_codes(G, flat, predictor, batch_size=batch_size, head=head)
        return np.asarray(scores).reshape(*shape, -1)
    head = head or make_score_head(predictor, with_images=True)
    parts = [G.synthesize_with(flat[i : i + batch_size], head, predictor.params)
             for i in range(0, flat.shape[0], batch_size)]
    scores = np.concatenate([np.asarray(p["scores"]) for p in parts]).reshape(*shape, -1)
    images = np.concatenate([np.asarray(p["images"]) for p in parts])
    return scores, images.reshape(*shape, *images.shape[1:])


def rescoring(scores: np.ndarray) -> np.ndarray:
    """(B, K) mean over samples of the score at the last distance minus at the first, from (M, B, S, K)."""
    s = np.asarray(scores, np.float64)
    return (s[:, :, -1] - s[:, :, 0]).mean(axis=0)


def pair_name(primal: str, condition: str) -> str:
    """The key of a conditional pair: "primal|condition"."""
    return f"{primal}{PAIR_SEPARATOR}{condition}"


def parse_pairs(text: str | Sequence[str], names: Sequence[str]) -> list[tuple[str, str]]:
    """Pairs "b|a,c|d" (or a list of "b|a") as [(b, a), ...]; InputError names a bad entry."""
    items = text.split(",") if isinstance(text, str) else list(text)
    pairs: list[tuple[str, str]] = []
    for item in items:
        parts = [p.strip() for p in str(item).split(PAIR_SEPARATOR)]
        if len(parts) != 2 or not all(parts):
            raise InputError(f"conditional pair {item!r} must read PRIMAL{PAIR_SEPARATOR}CONDITION, e.g. age|male")
        for part in parts:
            if part not in names:
                raise InputError(f"conditional pair {item!r}: no boundary {part!r}; choose from {', '.join(names)}")
        if parts[0] == parts[1]:
            raise InputError(f"conditional pair {item!r} conditions a boundary on itself")
        if tuple(parts) not in pairs:
            pairs.append((parts[0], parts[1]))
    if not pairs:
        raise InputError("no conditional pairs given")
    return pairs


def choose_pairs(names: Sequence[str], cosine: np.ndarray, *, min_cosine: float = 0.25,
                 max_pairs: int = 6) -> list[tuple[str, str]]:
    """The most entangled boundaries, both ways: ordered pairs (b, a) with |cos(b, a)| >= min_cosine.

    Sorted by |cosine|, largest first, at most `max_pairs` (b|a and a|b both count). Conditioning removes
    the part of b along a, so these are the pairs where it changes the edit the most.
    """
    found = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            c = abs(float(cosine[i, j]))
            if c >= min_cosine:
                found.append((c, i, j))
    found.sort(key=lambda t: (-t[0], t[1], t[2]))
    pairs: list[tuple[str, str]] = []
    for _, i, j in found:
        pairs += [(names[i], names[j]), (names[j], names[i])]
    return pairs[:max_pairs]


def conditioned(boundaries: dict[str, np.ndarray], pairs: Sequence[tuple[str, str]]) -> np.ndarray:
    """(P, d) float32: for each pair (b, a), boundary b projected orthogonal to boundary a, unit norm."""
    rows = [project_boundary(boundaries[b], boundaries[a]) for b, a in pairs]
    return np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, 0), np.float32)

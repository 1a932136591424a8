"""InterFaceGAN's data selection: which rows train, validate or remain for one attribute, and input checks.

InterFaceGAN's `utils/manipulator.py::train_boundary` sorts rows by score, takes the top K as positives and
the bottom K as negatives, shuffles each class and splits it into train/val; the rows in between are
labelled by the midpoint of the highest and lowest score. `split_by_score` reproduces that exactly (same
argsort, same shuffle order) and reports the rows it dropped.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from ifgan_jax import latents
from ifgan_jax.errors import InputError

__all__ = ["Split", "flatten_codes", "scores_2d", "split_by_score"]


@dataclasses.dataclass(frozen=True)
class Split:
    """InterFaceGAN's selection for one attribute, as row indices into the caller's `codes`.

    Training rows are the positive rows then the negative rows (labels 1 then 0), in the order InterFaceGAN
    feeds them to the SVM; the same holds for validation rows. Remaining rows are labelled 1 where their
    score is >= (max + min) / 2 of the valid scores.
    """

    train_idx: np.ndarray
    train_labels: np.ndarray
    val_idx: np.ndarray
    val_labels: np.ndarray
    remaining_idx: np.ndarray
    remaining_labels: np.ndarray
    chosen_num: int
    train_num: int
    val_num: int
    num_samples: int
    num_invalid: int
    num_nonfinite: int

    def counts(self) -> dict[str, int]:
        """Counts for reports: rows used for train/val/remaining and rows dropped."""
        return {
            "total": self.num_samples,
            "valid": self.num_samples - self.num_invalid - self.num_nonfinite,
            "chosen_per_class": self.chosen_num,
            "train": int(self.train_idx.size),
            "val": int(self.val_idx.size),
            "remaining": int(self.remaining_idx.size),
            "invalid": self.num_invalid,
            "nonfinite": self.num_nonfinite,
        }


def _chosen_num(num_valid: int, chosen_num_or_ratio: float) -> int:
    # InterFaceGAN: a ratio when in (0, 1], else a count; never more than half of the valid rows per class.
    if 0 < chosen_num_or_ratio <= 1:
        chosen = int(num_valid * chosen_num_or_ratio)
    else:
        chosen = int(chosen_num_or_ratio)
    return min(chosen, num_valid // 2)


def _check_split_args(chosen_num_or_ratio: float, split_ratio: float, seed: int | None = None) -> None:
    """Raise InputError unless the selection arguments make sense (positive count/ratio, split in (0, 1])."""
    if seed is not None:
        latents.check_seed(seed)
    if not np.isfinite(chosen_num_or_ratio) or chosen_num_or_ratio <= 0:
        raise InputError(f"chosen_num_or_ratio must be positive, got {chosen_num_or_ratio}")
    if not np.isfinite(split_ratio) or not 0 < split_ratio <= 1:
        raise InputError(f"split_ratio must be in (0, 1], got {split_ratio}")


def split_by_score(
    codes: np.ndarray | None,
    scores: np.ndarray,
    chosen_num_or_ratio: float = 0.02,
    split_ratio: float = 0.7,
    invalid_value: float | None = None,
    seed: int | None = 0,
) -> Split:
    """InterFaceGAN's top/bottom-K selection for one attribute; `scores` is (N,) or (N, 1).

    Rows whose score equals `invalid_value`, and always rows with a non-finite score, are dropped first.
    InterFaceGAN shuffles with the global `np.random`; here `np.random.RandomState(seed)` shuffles the
    positives then the negatives, which is the same permutation InterFaceGAN draws after `np.random.seed(seed)`.
    `codes` (or None) is only used to check that N matches.
    """
    s = np.asarray(scores)
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    if s.ndim != 1:
        raise InputError(f"scores must have shape (N,) or (N, 1) for one attribute, got {s.shape}")
    if codes is not None and np.shape(codes)[0] != s.shape[0]:
        raise InputError(f"codes have N={np.shape(codes)[0]} rows but scores have N={s.shape[0]}")
    if not np.issubdtype(s.dtype, np.number) or np.issubdtype(s.dtype, np.complexfloating):
        raise InputError(f"scores must be real numbers, got dtype {s.dtype}")
    _check_split_args(chosen_num_or_ratio, split_ratio, seed)
    n_total = s.shape[0]
    finite = np.isfinite(s)
    keep = finite.copy()
    num_invalid = 0
    if invalid_value is not None:
        is_invalid = finite & (s == invalid_value)
        num_invalid = int(is_invalid.sum())
        keep &= ~is_invalid
    num_nonfinite = int(n_total - finite.sum())
    rows = np.flatnonzero(keep)
    valid_scores = s[rows]
    # Same call as InterFaceGAN (argsort of an (N, 1) column, reversed) so ties land in the same order.
    order = np.argsort(valid_scores[:, None], axis=0)[::-1, 0]
    rows, sorted_scores = rows[order], valid_scores[order]
    n = rows.size
    chosen = _chosen_num(n, chosen_num_or_ratio)
    train_num = int(chosen * split_ratio)
    if chosen < 1 or train_num < 1:
        raise InputError(
            f"too few valid samples: {n} valid scores (of {n_total}; {num_invalid} invalid, {num_nonfinite} "
            f"non-finite) give {chosen} per class and {train_num} training rows per class with "
            f"chosen_num_or_ratio={chosen_num_or_ratio}, split_ratio={split_ratio}; need at least 1")
    if sorted_scores[0] == sorted_scores[-1]:
        raise InputError(f"scores have zero variance over the {n} valid rows (all {sorted_scores[0]})")
    val_num = chosen - train_num
    rng = np.random.RandomState(seed) if seed is not None else np.random.RandomState()
    pos_perm = np.arange(chosen)
    rng.shuffle(pos_perm)
    neg_perm = np.arange(chosen)
    rng.shuffle(neg_perm)
    pos_rows, neg_rows = rows[:chosen][pos_perm], rows[n - chosen:][neg_perm]
    train_idx = np.concatenate([pos_rows[:train_num], neg_rows[:train_num]])
    val_idx = np.concatenate([pos_rows[train_num:], neg_rows[train_num:]])
    remaining_idx = rows[chosen:n - chosen]
    # InterFaceGAN's threshold: midpoint of the highest and lowest valid score, in the scores' own dtype.
    decision = (sorted_scores[0] + sorted_scores[-1]) / 2
    remaining_labels = np.ones(remaining_idx.size, dtype=np.int64)
    remaining_labels[sorted_scores[chosen:n - chosen] < decision] = 0
    return Split(
        train_idx=train_idx,
        train_labels=np.r_[np.ones(train_num, np.int64), np.zeros(train_num, np.int64)],
        val_idx=val_idx,
        val_labels=np.r_[np.ones(val_num, np.int64), np.zeros(val_num, np.int64)],
        remaining_idx=remaining_idx,
        remaining_labels=remaining_labels,
        chosen_num=chosen,
        train_num=train_num,
        val_num=val_num,
        num_samples=n_total,
        num_invalid=num_invalid,
        num_nonfinite=num_nonfinite,
    )


def flatten_codes(codes: Any) -> np.ndarray:
    """Codes (N, D) or W+ (N, L, d) -> (N, D) real array, checked finite."""
    if isinstance(codes, jax.Array):
        codes = np.asarray(codes)
    if not isinstance(codes, np.ndarray):
        raise InputError(f"codes must be a numpy array of shape (N, d) or (N, L, d), got {type(codes).__name__}")
    if codes.ndim not in (2, 3):
        raise InputError(f"codes must have shape (N, d) or W+ (N, L, d), got {codes.shape}")
    if not np.issubdtype(codes.dtype, np.floating):
        if not np.issubdtype(codes.dtype, np.integer):
            raise InputError(f"codes must be real numbers, got dtype {codes.dtype}")
        codes = codes.astype(np.float32)
    flat = codes.reshape(codes.shape[0], -1)
    if flat.shape[0] < 2 or flat.shape[1] < 1:
        raise InputError(f"codes need at least 2 rows and 1 dimension, got {codes.shape}")
    bad = ~np.isfinite(flat).all(axis=1)
    if bad.any():
        raise InputError(f"codes contain non-finite values in {int(bad.sum())} rows (first: row "
                         f"{int(np.flatnonzero(bad)[0])}); remove them or their scores")
    return flat


def scores_2d(scores: Any, n: int) -> np.ndarray:
    """Scores (N,) or (N, K) -> (N, K) real array with N == `n` rows (one column per attribute)."""
    s = np.asarray(scores)
    if s.ndim == 1:
        s = s[:, None]
    if s.ndim != 2 or s.shape[1] < 1:
        raise InputError(f"scores must have shape (N,) or (N, K), got {s.shape}")
    if s.shape[0] != n:
        raise InputError(f"codes have N={n} rows but scores have N={s.shape[0]}; they must match")
    if not (np.issubdtype(s.dtype, np.floating) or np.issubdtype(s.dtype, np.integer)):
        raise InputError(f"scores must be real numbers, got dtype {s.dtype}")
    return s

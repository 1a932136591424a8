"""Semantic boundaries (InterFaceGAN): select rows by score, fit linear SVMs, project, read and write.

One idea per module:

* `selection.py`: InterFaceGAN's top/bottom-K selection and train/val split (`split_by_score`, `Split`) and the
  checks on codes and scores;
* `solvers.py`: the linear SVM fits, scikit-learn's SVC (InterFaceGAN's own) and the batched JAX solver;
* `train.py`: `train_boundaries` (every score column, one program) and `train_boundary` (one attribute, as
  InterFaceGAN names it), with accuracies and a JSON report per attribute;
* `projection.py`: `project_boundary`, conditional boundaries for any number of conditions;
* `files.py`: `save_boundary` / `load_boundary`, the (1, d) .npy files InterFaceGAN's edit.py reads, and their
  names (`boundary_file_name`: happy -> happy_boundary.npy, `boundary_name`: back).
"""

from __future__ import annotations

from ifgan_jax.boundary.files import BOUNDARY_SUFFIX, boundary_file_name, boundary_name, load_boundary, save_boundary
from ifgan_jax.boundary.projection import project_boundary
from ifgan_jax.boundary.selection import Split, split_by_score
from ifgan_jax.boundary.train import BoundaryResult, TrainedBoundaries, train_boundaries, train_boundary

__all__ = [
    "BOUNDARY_SUFFIX",
    "BoundaryResult",
    "Split",
    "TrainedBoundaries",
    "boundary_file_name",
    "boundary_name",
    "load_boundary",
    "project_boundary",
    "save_boundary",
    "split_by_score",
    "train_boundaries",
    "train_boundary",
]

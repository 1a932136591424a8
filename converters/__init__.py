"""Weight converters: read checkpoints without torch/TF and map them to Flax params pytrees."""

from converters.torch_checkpoint import read_torch_checkpoint

__all__ = ["read_torch_checkpoint"]

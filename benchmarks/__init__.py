"""Benchmarks: each script measures JAX beside its PyTorch reference in one run."""

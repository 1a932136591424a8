"""Resumable directory jobs: one module per job, each with one `run(...)`; the CLI calls exactly one."""

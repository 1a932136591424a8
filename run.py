"""CLI entry point: `python run.py SUBCOMMAND ...` (same as the `ifgan` console script)."""

import sys

from ifgan_jax.cli import main

if __name__ == "__main__":
    sys.exit(main())

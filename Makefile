# Two entry points for a fresh machine: `make demo` and `make test`.
# Each creates .venv in the checkout on first use. GPU users: make demo TORCH_SPEC="torch==2.13.0 --index-url ..."
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench-extract bench-cluster bench-annotate bench-probe bench-neurons

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps "neurox>=1.0"   # test-only reference for Probeless (no runtime use)
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/python -m neurons.pipeline experiment=demo $(ARGS)

test: setup
	$(BIN)/python -m pytest -q $(ARGS)

lint: setup
	$(BIN)/ruff check concepts probing neurons tests bench

bench-extract: setup
	$(BIN)/python bench/bench_extract.py $(ARGS)

bench-cluster: setup
	$(BIN)/python bench/bench_cluster.py $(ARGS)

bench-annotate: setup
	$(BIN)/python bench/bench_annotate.py $(ARGS)

bench-probe: setup
	$(BIN)/python bench/bench_probe.py $(ARGS)

bench-neurons: setup
	$(BIN)/python bench/bench_neurons.py $(ARGS)

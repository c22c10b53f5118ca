# The two commands a newcomer needs:  make run   and   make test
# Both create a local virtual environment (.venv) first. TORCH picks the PyTorch wheel
# (the CPU build by default; use e.g. `make run TORCH=torch` on a CUDA machine).
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
PY      = $(VENV)/bin/python
ARGS   ?=

.PHONY: setup run test test-fast lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

run: setup          ## train, simulate and report: the paper's top-k experiment on synthetic data
	$(PY) -m rectest.train +experiment=topk $(ARGS)

test: setup         ## the whole test suite (gpu tests skip without CUDA)
	$(PY) -m pytest $(ARGS)

test-fast: setup    ## everything but the slow tests
	$(PY) -m pytest -m "not slow" $(ARGS)

lint: setup
	$(VENV)/bin/ruff check rectest tests benchmarks

bench: setup        ## every benchmark script, each prints a table
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache

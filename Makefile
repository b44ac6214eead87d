# graftmatch: the two set-up commands are `make demo` and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

# Tests and the demo read the IPD-IMGT/HLA release in ../shared when it is there (CI and
# developers); elsewhere the demo downloads the pinned release into the user cache.
SHARED_IMGT := $(abspath $(wildcard ../shared/data/imgt-hla/3.58.0))
ifneq ($(SHARED_IMGT),)
export GRAFTMATCH_IMGT_DIR ?= $(SHARED_IMGT)
endif

.PHONY: demo serve test test-postgres lint bench clean
.PHONY: grim-env

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The demo predicts with the LGPL example frequency set from ../shared when it is there, else
# with a synthetic set it generates (and labels as such).
DEMO_HF := $(wildcard ../shared/data/haplotype-frequencies/nmdp-py-graph-imputation-example/CAU.freqs.gz)

demo: $(VENV)/.runtime
	$(BIN)/graftmatch demo $(if $(DEMO_HF),--hf $(DEMO_HF) --population CAU)

# The REST API on 127.0.0.1:8000 (the database in GRAFTMATCH_HOME, migrated first).
serve: $(VENV)/.runtime
	$(BIN)/graftmatch db upgrade
	$(BIN)/graftmatch serve

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

# Without GRAFTMATCH_TEST_POSTGRES_URL the PostgreSQL variants of the store tests are skipped;
# test-postgres runs the whole suite with a throwaway PostgreSQL server (as .ci/run does).
test: lint
	$(BIN)/pytest -n 2

test-postgres:
	bash .ci/with-postgres $(MAKE) test

bench: $(VENV)/.dev grim-env
	$(BIN)/python benchmarks/bench_reduce.py
	$(BIN)/python benchmarks/bench_match.py
	$(BIN)/python benchmarks/bench_impute.py
	$(BIN)/python benchmarks/calibration.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# NMDP's py-graph-imputation (GRIM, LGPL-3.0), a benchmark peer only, in a venv of its own
# (its sdist builds a Cython extension: needs a C compiler). benchmarks/peers/grim_runner.py
# runs with $(GRIM_VENV)/bin/python.
GRIM_VENV := benchmarks/.venv-grim
GRIM_STAMP := $(GRIM_VENV)/.py-graph-imputation-1.0.0

grim-env: $(GRIM_STAMP)

$(GRIM_STAMP):
	test -x $(GRIM_VENV)/bin/python || $(PYTHON) -m venv $(GRIM_VENV)
	$(GRIM_VENV)/bin/pip install --quiet --upgrade pip
	$(GRIM_VENV)/bin/pip install --quiet py-graph-imputation==1.0.0
	touch $@

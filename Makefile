# Triad: `make demo` runs the whole system, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench bench-fleet bench-scheduling bench-compression bench-rollout clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: install
	$(PY) -m controlplane.demo

test: install
	TRIAD_VAR_DIR=var/test $(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports

bench: bench-scheduling bench-fleet bench-compression bench-rollout

bench-fleet: install
	$(PY) -m benchmarks.fleet $(BENCH_ARGS)

bench-scheduling: install
	$(PY) -m benchmarks.scheduling

bench-compression: install
	$(PY) -m benchmarks.compression

bench-rollout: install
	$(PY) -m benchmarks.rollout $(BENCH_ARGS)

clean:
	rm -rf var/ .pytest_cache .mypy_cache .ruff_cache

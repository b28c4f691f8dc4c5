# Two commands: `make demo` and `make test`. Both set up .venv from nothing but python3.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
PYTEST_WORKERS ?= 2
# Parity tests (torch/timm/transformers) run in CI and when PARITY=1; elsewhere they
# are skipped with a visible reason.
ifeq ($(CI),true)
PARITY := 1
endif
PARITY ?= 0

.PHONY: demo test test-slow lint format install install-parity bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(PY) setup.cfg pyproject.toml
	$(PIP) install -e ".[test]"
	touch $@

$(VENV)/.installed-parity: $(VENV)/.installed
	$(PIP) install -e ".[test,parity]"
	touch $@

install: $(VENV)/.installed

install-parity: $(VENV)/.installed-parity

ifeq ($(PARITY),1)
TEST_DEPS := $(VENV)/.installed-parity
else
TEST_DEPS := $(VENV)/.installed
endif

demo: $(VENV)/.installed
	$(PY) -m experiments.demo --config=configs/demo.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: $(TEST_DEPS) lint
	PARITY=$(PARITY) $(PY) -m pytest -m "not slow" -n $(PYTEST_WORKERS) tests

test-slow: $(TEST_DEPS) lint
	PARITY=$(PARITY) $(PY) -m pytest -n $(PYTEST_WORKERS) tests

bench: $(VENV)/.installed-parity
	$(PY) -m experiments.bench_backbone --config=configs/bench_backbone.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis

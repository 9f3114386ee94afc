# SPDX-License-Identifier: MIT
# Two commands matter: `make demo` and `make test`. Each installs what it needs first (idempotent).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
include src/airlock/layout.env
CACHE ?= $(AIRLOCK_CACHE_DEFAULT)
export AIRLOCK_CACHE := $(CACHE)
PY := $(VENV)/bin/python
STAMP := $(VENV)/$(VENV_STAMP)

.PHONY: test demo lint deps venv runtime guest spectrum-host clean bench mutation

deps:
	bash scripts/install-deps.sh

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,lint]'
	touch $(STAMP)

venv: $(STAMP)

runtime: deps
	bash scripts/make-runtime.sh

guest: deps runtime venv
	bash scripts/make-guest.sh

# The lab's Spectrum-shaped host: trixie packages over the runtime (docs/spectrum.md#lab).
spectrum-host: deps runtime
	bash scripts/make-spectrum-host.sh

setup: deps venv runtime guest spectrum-host

test: setup
	bash scripts/run-tests.sh $(PY) $(PYTEST_ARGS)

# Remove each guard of tests/mutation/catalogue.py in a copy of src/ and require its tests to fail
# (docs/mutation.md); MUTATIONS="name ..." runs some.
mutation: setup
	$(PY) -m tests.mutation.run $(MUTATIONS)

demo: setup
	$(VENV)/bin/airlock demo $(DEMO_ARGS)

lint: venv
	$(VENV)/bin/ruff format --check src tests bench scripts
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: setup
	$(PY) bench/inspection.py
	$(PY) bench/agent.py
	$(PY) bench/fetchers.py
	$(PY) bench/update.py

clean:
	rm -rf $(VENV) build src/*.egg-info

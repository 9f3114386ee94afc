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

.PHONY: fuzz fuzz-long test demo lint deps venv runtime guest debs spectrum-host setup clean bench mutation dist deb

deps:
	bash scripts/install-deps.sh

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,lint,dist,fuzz]'
	touch $(STAMP)

venv: $(STAMP)

runtime: deps
	bash scripts/make-runtime.sh

guest: deps runtime venv
	bash scripts/make-guest.sh

# What a clean trixie root needs to install the .deb offline (the packaging tests).
debs: deps runtime
	bash scripts/fetch-debs.sh

# The lab's Spectrum-shaped host: trixie packages over the runtime (docs/spectrum.md#lab).
spectrum-host: deps runtime
	bash scripts/make-spectrum-host.sh

setup: deps venv runtime guest debs spectrum-host

test: setup
	bash scripts/run-tests.sh $(PY) $(PYTEST_ARGS)

# Remove each guard of tests/mutation/catalogue.py in a copy of src/ and require its tests to fail
# (docs/mutation.md); MUTATIONS="name ..." runs some.
mutation: setup
	$(PY) -m tests.mutation.run $(MUTATIONS)

# The sdist and the wheel (docs/packaging.md), built offline with the pinned `dist` extra; the
# wheel is built from the unpacked sdist, so a file the sdist lacks is missing from the wheel too.
# Timestamps come from the last commit (SOURCE_DATE_EPOCH), so the wheel is byte-identical when
# rebuilt; setuptools' leftovers go first, as its file list would otherwise remember old files.
DIST ?= dist
dist: venv
	rm -rf $(DIST) build src/*.egg-info
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || echo 315532800) \
	  $(PY) -m build --no-isolation --outdir $(DIST) .

# The Debian package (docs/packaging.md): built with debhelper from the sdist and the wheel.
deb: dist deps
	bash scripts/make-deb.sh $(DIST)

demo: setup
	$(VENV)/bin/airlock demo $(DEMO_ARGS)

lint: venv
	$(VENV)/bin/ruff format --check src tests bench scripts fuzz
	$(VENV)/bin/ruff check src tests bench scripts fuzz
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: setup
	$(PY) bench/inspection.py
	$(PY) bench/agent.py
	$(PY) bench/fetchers.py
	$(PY) bench/update.py
	$(PY) bench/update.py --scale --rounds 1
	$(PY) -P bench/proc.py
	$(PY) -P bench/delta.py

# Coverage-guided fuzzing (docs/fuzzing.md): every target in turn, crash inputs in fuzz-crashes/.
# `make fuzz` is the short run (FUZZ_RUNS each); `make fuzz-long` the benchmark of
# docs/benchmarks.md (1,000,000 each, at the lowest priority).
FUZZ_RUNS ?= 20000
fuzz: venv
	$(PY) -m fuzz.run all --runs $(FUZZ_RUNS)

fuzz-long: venv
	nice -n 19 $(PY) -m fuzz.run all --runs 1000000

clean:
	rm -rf $(VENV) build dist src/*.egg-info

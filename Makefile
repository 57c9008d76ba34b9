# airflow-provider-aoai-evals developer and CI entry points (GNU make 4.3+).
#   make demo    build .venv (Airflow 3.3.2) and run the demo DAG against the fake Evals server
#   make test    build both venvs, lint, docs, the whole suite on Airflow 3.3.2, `-m compat` on Airflow 3.1.8,
#                and `make dist` (the built wheel installed and run outside the checkout)
# Every stage prints "== stage <name>: <seconds>s"; `make test` ends with a summary of all stages.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules

PYTHON ?= python3
UV_VERSION ?= 0.13.9

AF_VERSION := 3.3.2
AF31_VERSION := 3.1.8
CONSTRAINTS := constraints/airflow-$(AF_VERSION)-py3.11.txt
CONSTRAINTS31 := constraints/airflow-$(AF31_VERSION)-py3.11.txt

VENV := .venv
VENV31 := .venv-af31
PY := $(VENV)/bin/python
PY31 := $(VENV31)/bin/python

# One Airflow home per Airflow version (a DB migrated by 3.3 cannot be opened by 3.1), shared by all
# test processes of that version, the demo and the benchmarks. Gitignored; `make clean` removes it.
AIRFLOW_HOME_DIR := .airflow-home/airflow-$(AF_VERSION)
AIRFLOW31_HOME_DIR := .airflow-home/airflow-$(AF31_VERSION)
RUN := bash scripts/airflow-env.sh $(AIRFLOW_HOME_DIR)
RUN31 := bash scripts/airflow-env.sh $(AIRFLOW31_HOME_DIR)
TIMED := bash scripts/timed.sh

# Lint only the directories that already contain Python files (mypy fails on an empty directory).
LINT_DIRS := airflow_provider_aoai_evals tests example_dags benchmarks scripts e2e
LINT_PATHS = $(foreach d,$(LINT_DIRS),$(if $(shell find $(d) -name '*.py' -print -quit 2>/dev/null),$(d)))

# Stage timings of this make invocation (the caller may pass its own file, e.g. .ci/run does).
ifeq ($(origin TIMINGS_FILE),undefined)
TIMINGS_FILE := $(CURDIR)/.artifacts/timings.txt
ifeq ($(MAKELEVEL),0)
$(shell mkdir -p $(dir $(TIMINGS_FILE)) && : > $(TIMINGS_FILE))
endif
endif
export TIMINGS_FILE

.PHONY: help venv venv-af31 lint test test-af33 test-af31 demo bench docs dist clean timings azurite

help:
	@echo "make demo       build .venv (Airflow $(AF_VERSION)) and run scripts/demo.py"
	@echo "make test       venv + venv-af31 + lint + docs + pytest (Airflow $(AF_VERSION)) + pytest -m compat (Airflow $(AF31_VERSION)) + dist"
	@echo "make venv       .venv: Airflow $(AF_VERSION) + extras azure,test,lint, from $(CONSTRAINTS)"
	@echo "make venv-af31  .venv-af31: Airflow $(AF31_VERSION) + extras azure,test, from $(CONSTRAINTS31)"
	@echo "make lint       ruff check, ruff format --check, mypy (Python 3.10 rules)"
	@echo "make bench      benchmarks/run_all.py"
	@echo "make azurite    install the Azurite storage emulator (npm) used by the Azure Blob export tests"
	@echo "make docs       documentation site with mkdocs, warnings as errors (also part of make test)"
	@echo "make dist       sdist + wheel in dist/, twine check, their file lists, the wheel installed and run"
	@echo "                outside the checkout (example DAG against the fake server); also part of make test"
	@echo "make clean      remove venvs, Airflow homes, caches and build output"
	@echo "make e2e        end-to-end suite: real Airflow $(AF_VERSION) + $(AF31_VERSION) on PostgreSQL (e2e/run.sh)"

# ---- virtual environments ------------------------------------------------------------------------------
# __init__.py holds the version: a new one must reach the installed metadata (importlib.metadata).
$(VENV)/.stamp: pyproject.toml airflow_provider_aoai_evals/__init__.py $(CONSTRAINTS) scripts/make-venv.sh
	$(TIMED) venv env PYTHON=$(PYTHON) bash scripts/make-venv.sh $(VENV) $(CONSTRAINTS) azure,test,lint $(UV_VERSION)
	touch $@

$(VENV31)/.stamp: pyproject.toml airflow_provider_aoai_evals/__init__.py $(CONSTRAINTS31) scripts/make-venv.sh
	$(TIMED) venv-af31 env PYTHON=$(PYTHON) bash scripts/make-venv.sh $(VENV31) $(CONSTRAINTS31) azure,test $(UV_VERSION)
	touch $@

venv: $(VENV)/.stamp
venv-af31: $(VENV31)/.stamp

# ---- checks --------------------------------------------------------------------------------------------
# All three linters run even when one fails, so one CI run reports everything.
lint: venv
	@rc=0; \
	$(TIMED) ruff-check $(VENV)/bin/ruff check $(LINT_PATHS) || rc=1; \
	$(TIMED) ruff-format $(VENV)/bin/ruff format --check $(LINT_PATHS) || rc=1; \
	$(TIMED) mypy $(VENV)/bin/mypy $(LINT_PATHS) || rc=1; \
	exit $$rc

# Azurite (Azure Storage emulator, from npm) for the export tests, installed once into .artifacts/azurite
# outside pytest's per-test timeout. Without npm the install is skipped and those tests skip themselves.
azurite:
	@if command -v npm >/dev/null; then $(TIMED) azurite bash scripts/azurite.sh install >/dev/null; \
	else echo "== npm not found: Azure Blob export tests will be skipped"; fi

test-af33: venv azurite
	$(TIMED) pytest-af$(AF_VERSION) $(RUN) $(PY) -m pytest

# pytest exit code 5 = "no tests collected": not a failure here.
test-af31: venv-af31 azurite
	@rc=0; $(TIMED) pytest-af$(AF31_VERSION)-compat $(RUN31) $(PY31) -m pytest -m compat || rc=$$?; \
	if [[ $$rc -eq 5 ]]; then echo "== no compat tests collected on Airflow $(AF31_VERSION)"; exit 0; fi; \
	exit $$rc

# The venvs first (nothing else can run without them); then lint and both test runs, each even when an
# earlier one failed, so one CI run reports everything; the stage summary is printed in every case.
test:
	@rc=0; \
	if $(MAKE) --no-print-directory venv venv-af31; then \
	  $(MAKE) --no-print-directory lint || rc=1; \
	  $(MAKE) --no-print-directory docs || rc=1; \
	  $(MAKE) --no-print-directory test-af33 || rc=1; \
	  $(MAKE) --no-print-directory test-af31 || rc=1; \
	  $(MAKE) --no-print-directory dist || rc=1; \
	else rc=1; fi; \
	$(TIMED) --summary; \
	exit $$rc

timings:
	@$(TIMED) --summary

# ---- demo, benchmarks, docs ----------------------------------------------------------------------------
demo: venv
	$(TIMED) demo $(RUN) $(PY) scripts/demo.py

bench: venv
	$(TIMED) bench $(RUN) $(PY) benchmarks/run_all.py

# The documentation site, warnings as errors (mkdocs.yml sets strict); output in site/ (gitignored).
docs: venv
	$(TIMED) docs $(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) $(VENV31) .airflow-home .artifacts .pytest_cache .mypy_cache .ruff_cache build dist site \
	  *.egg-info
	find . -name __pycache__ -type d -not -path './.git/*' -prune -exec rm -rf {} +

# ---- release files ---------------------------------------------------------------------------------------
# sdist and wheel in dist/ (gitignored), checked with twine and scripts/check_dist.py, then the wheel alone
# installed into a temporary venv outside the checkout and used there (scripts/dist.sh says how).
dist: venv
	$(TIMED) dist bash scripts/dist.sh $(PY) $(CONSTRAINTS)

# ---- end-to-end suite ------------------------------------------------------------------------------------
# Real Airflow (api-server, scheduler, dag-processor, triggerer; LocalExecutor; PostgreSQL) against
# FakeEvalsServer, plus headless Chromium. Installs postgresql/chromium with apt-get when missing (root or
# passwordless sudo). See docs/reliability.md; artefacts in .artifacts/e2e/.
.PHONY: e2e
e2e: venv venv-af31
	bash e2e/run.sh

# Continuum's entry points. `make test` is what CI runs (.ci/run).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: test demo lint types imports crds crds-check bench testbed-bins unit integration clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,demo]'
	touch $(STAMP)

venv: $(STAMP)

# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd, helm and KubeRay's
# ray-operator, built with Go once per pinned version and cached under ~/.cache/continuum.
testbed-bins:
	$(PYTHON) e2e/testbed.py build

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy -p continuum
	$(BIN)/mypy e2e

imports: $(STAMP)
	$(BIN)/lint-imports

crds: $(STAMP)
	$(BIN)/continuum crds

crds-check: $(STAMP)
	$(BIN)/continuum crds --check

unit: $(STAMP)
	$(BIN)/pytest -m unit

integration: $(STAMP) testbed-bins
	$(BIN)/pytest -m 'integration or e2e'

test: $(STAMP) testbed-bins lint types imports crds-check
	$(BIN)/pytest

demo: $(STAMP)
	$(BIN)/continuum demo

bench: $(STAMP)
	$(BIN)/continuum bench --scenario contended --json bench.json --markdown bench.md

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

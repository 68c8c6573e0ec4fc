# Two commands set everything up on a fresh machine: `make synth` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

# The venv's python is the `python3` that cdk.json's app command runs.
export PATH := $(CURDIR)/$(BIN):$(PATH)
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: install synth test deploy diff destroy local bench lint clean

install: $(PY_STAMP) $(NODE_STAMP)

$(PY_STAMP): requirements.txt requirements-dev.txt docker/mlflow/requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

synth: install
	npx cdk synth --all --quiet

test: install
	$(BIN)/python -m pytest

deploy: install
	npx cdk deploy --all

diff: install
	npx cdk diff --all

destroy: install
	npx cdk destroy --all

# `make local AUTH_MODE=accounts` runs MLflow's own users and permissions.
AUTH_MODE ?= shared
local: install
	$(BIN)/python -m localrun --auth-mode $(AUTH_MODE)

bench: install
	$(BIN)/python benchmarks/proxy_overhead.py

clean:
	rm -rf cdk.out .pytest_cache

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

.PHONY: install lock system-packages mlflow-previous synth test test-unit upgrade-check restore-drill preflight deploy diff destroy rotate-password cost local gc bench bench-accounts bench-iam lint clean

# Settings for synth/deploy/diff/destroy/cost: CDK_ARGS="-c key=value ..." and/or
# PRESET=<name> (tools/presets/<name>.json, e.g. PRESET=dev); CDK_ARGS wins over the preset.
CDK_ARGS ?=
PRESET ?=
PRESET_ARGS = $(if $(PRESET),$(shell $(BIN)/python -m tools.presets $(PRESET) || echo PRESET_ERROR))
SETTINGS = $(if $(findstring PRESET_ERROR,$(PRESET_ARGS)),$(error invalid PRESET=$(PRESET), see the line above),$(PRESET_ARGS) $(CDK_ARGS))
COST_OUT := cdk.out.cost

MLFLOW_REQUIREMENTS := docker/mlflow/requirements.txt
MLFLOW_LOCK := docker/mlflow/requirements.lock
LOCK_CONSTRAINTS := $(VENV)/mlflow-lock-constraints.txt

install: $(PY_STAMP) $(NODE_STAMP)

# MLflow's side first, from the image's lock and exactly as the image installs
# it; then the rest, with the lock as constraints (without its hashes, which
# pip would demand of every package): a development package that needs another
# version of a locked one fails the install instead of moving it.
$(PY_STAMP): requirements.txt requirements-dev.txt $(MLFLOW_LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes --no-deps --only-binary=:all: -r $(MLFLOW_LOCK)
	$(BIN)/python -m tools.mlflow_lock constraints > $(LOCK_CONSTRAINTS)
	$(BIN)/pip install --quiet -r requirements-dev.txt -c $(LOCK_CONSTRAINTS)
	touch $@

# Compiles docker/mlflow/requirements.txt into the image's lock (needs the
# package index; uv reads PyPI): one version of each package for Linux x86_64
# and aarch64 alike (--universal, --fork-strategy fewest) on the image's Python
# minor, with hashes. Pins already in the lock stay unless the change needs
# them to move; UPGRADE=1 takes the newest release of everything. Then every
# locked file is downloaded for both architectures, hashes checked.
lock: $(PY_STAMP)
	$(BIN)/uv pip compile --quiet --universal --fork-strategy fewest \
	  --python-version $$($(BIN)/python -m tools.mlflow_lock image-python) \
	  --generate-hashes $(if $(UPGRADE),--upgrade) $(MLFLOW_REQUIREMENTS) -o $(MLFLOW_LOCK)
	$(BIN)/python -m tools.mlflow_lock check-wheels

# nginx, PostgreSQL, ... from apt when missing (tools/system-packages.txt is the list).
system-packages:
	tools/install-system-packages.sh

# The MLflow release before the pinned one, in a venv cached under .venv
# (localrun/mlflow_versions.py): the upgrade test starts it. Once from the
# package index (about 25 s), nothing after that.
mlflow-previous: install
	$(BIN)/python -m localrun.mlflow_versions

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# `cdk synth` and `cdk diff` take every stack by default; only deploy and destroy know --all.
synth: install
	npx cdk synth --quiet $(SETTINGS)

# Test runs cache bytecode even where PYTHONDONTWRITEBYTECODE is set (as on some CI
# images): otherwise every xdist worker and every Python a test starts compiles the
# project's modules again, and pytest rewrites the test modules' asserts again.
test test-unit restore-drill: export PYTHONDONTWRITEBYTECODE :=

# The slowest 25 tests are listed at the end, so a test that grows slow shows in CI.
test: install system-packages mlflow-previous
	$(BIN)/python -m pytest --durations=25

# Fast feedback while you work: stacks, config, tools, lab and docker units;
# no server starts (the integration and e2e tests are left to `make test`).
UNIT_TESTS := tests/stacks tests/tools tests/lab tests/docker tests/test_conftest.py tests/test_synth.py
test-unit: install
	$(BIN)/python -m pytest -m "not integration and not e2e" --durations=10 $(UNIT_TESTS)

# Try MLflow VERSION on a copy of the deployment on loopback before moving the
# pin: the pinned version logs a sample (accounts mode: with a user and grants),
# two VERSION servers migrate the schemas together, the sample and the grants
# must be unchanged (localrun/upgrade_check.py).
upgrade-check: install system-packages
	@if [ -z "$(VERSION)" ]; then echo "make upgrade-check: give the MLflow release to try, e.g. make upgrade-check VERSION=3.18.0" >&2; exit 2; fi
	$(BIN)/python -m localrun.upgrade_check $(VERSION)

# The README's restore procedure rehearsed on loopback (backup, destroy, restore, compare).
restore-drill: install system-packages
	$(BIN)/python -m pytest -n 0 -q tests/integration/test_restore_drill.py

# Credentials, region, Docker engine and CDK bootstrap, each problem on one line.
preflight: install
	$(BIN)/python -m tools.preflight $(SETTINGS)

deploy: preflight
	npx cdk deploy --all $(SETTINGS)

diff: install
	npx cdk diff $(SETTINGS)

# The CLI asks for confirmation on a terminal; FORCE=1 confirms in advance (CI, scripts).
destroy: install
ifeq ($(FORCE),1)
	$(BIN)/python -m tools.preflight --only credentials
	npx cdk destroy --all --force $(SETTINGS)
else
	@if [ ! -t 0 ]; then \
	  echo "make destroy: no terminal to confirm on; to delete the stacks without a question, run: make destroy FORCE=1" >&2; \
	  exit 1; \
	fi
	$(BIN)/python -m tools.preflight --only credentials
	npx cdk destroy --all $(SETTINGS)
endif

# New generated password in the credentials secret, then a rolling restart of the tasks.
rotate-password: install
	$(BIN)/python -m tools.rotate_password

# Synthesizes with the same settings as deploy, then prices the templates.
cost: install
	npx cdk synth --quiet --output $(COST_OUT) $(SETTINGS)
	$(BIN)/python -m tools.cost $(COST_OUT)

# `make local AUTH_MODE=accounts` runs MLflow's own users and permissions, AUTH_MODE=sso
# a local OpenID provider and the OIDC plugin (it prints how to sign in).
AUTH_MODE ?= shared
# `make local AI_GATEWAY=true` turns on MLflow's AI gateway, like the stack's ai_gateway setting.
AI_GATEWAY ?= false
local: install system-packages
	$(BIN)/python -m localrun --auth-mode $(AUTH_MODE) --ai-gateway $(AI_GATEWAY)

# `make gc` prints what garbage collection would delete from the running `make local` stack
# (deleted runs and logged models older than OLDER_THAN_DAYS, default 30, and orphaned
# prefixes); APPLY=1 deletes them, DELETE_ORPHANS=1 with it the orphaned prefixes too.
APPLY ?=
DELETE_ORPHANS ?=
OLDER_THAN_DAYS ?=
gc: install
	$(BIN)/python -m localrun.gc $(if $(filter 1,$(APPLY)),--apply) $(if $(filter 1,$(DELETE_ORPHANS)),--delete-orphans) \
		$(if $(OLDER_THAN_DAYS),--older-than-days $(OLDER_THAN_DAYS))

bench: install system-packages
	$(BIN)/python benchmarks/proxy_overhead.py

# accounts vs shared log-batch throughput, presigned 200 MB transfers vs plain S3 (about 10 minutes).
bench-accounts: install system-packages
	$(BIN)/python -u benchmarks/accounts_and_artifacts.py

# IAM sign-in: signed log-batch throughput against password sign-in, one accounts stack (about 2 minutes).
bench-iam: install system-packages
	$(BIN)/python -u benchmarks/iam_sign_in.py

# The habits CI enforces (and .pre-commit-config.yaml locally): ruff's rules and
# format, and mypy over stacks, docker/mlflow, localrun, lab and tools (pyproject.toml).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf cdk.out $(COST_OUT) .pytest_cache .mypy_cache .ruff_cache

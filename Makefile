# Stapes: `make run` and `make test` do all the set-up on a fresh Debian 12 machine (as root).
SHELL := /bin/bash
VENV := .venv
STAPES_DIR ?= /var/lib/stapes
export STAPES_DIR

.PHONY: setup setup-test run stop test test-unit test-integration lint typecheck bench clean

setup:
	scripts/setup-host.sh

setup-test:
	STAPES_SETUP_TEST=1 scripts/setup-host.sh

run: setup
	scripts/run-daemon.sh

stop:
	scripts/run-daemon.sh stop

lint: setup-test
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: setup-test
	$(VENV)/bin/mypy src bench

test-unit: setup-test
	$(VENV)/bin/pytest tests/unit

test-integration: setup-test
	$(VENV)/bin/pytest tests/integration

test: lint typecheck
	$(VENV)/bin/pytest tests

bench: setup-test
	$(VENV)/bin/python bench/launch.py
	$(VENV)/bin/python bench/instances.py
	$(VENV)/bin/python bench/storage.py
	$(VENV)/bin/python bench/network.py
	$(VENV)/bin/python bench/api.py
	$(VENV)/bin/python bench/images.py
	$(VENV)/bin/python bench/cli_paths.py
	$(VENV)/bin/python bench/burst.py
	$(VENV)/bin/python bench/cli_start.py
	$(VENV)/bin/python bench/scale.py
	$(VENV)/bin/python bench/vm.py
	$(VENV)/bin/python bench/migration.py
	$(VENV)/bin/python bench/cluster.py
	$(VENV)/bin/python bench/ui.py

clean:
	rm -rf $(VENV) build src/*.egg-info

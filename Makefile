# Developer and CI entry points. `make setup` prepares a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.8
# uv from PATH, else the one `make setup` installs with pip (runnable as a module).
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
export UV

.PHONY: help setup run test lint format up down status bench

help:
	@echo "targets: setup run test lint format up down status bench (make run|bench DATA_DIR=../shared/data)"

setup:  ## install uv (if missing), the locked dependencies and a Redis server
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 \
		|| python3 -m pip install --quiet "uv==$(UV_VERSION)" \
		|| python3 -m pip install --quiet --user --break-system-packages "uv==$(UV_VERSION)"
	$(UV) sync --frozen
	scripts/ensure-redis.sh

test: setup  ## the test suite (starts its own Redis, MLflow and PostgreSQL)
	scripts/ensure-postgres.sh
	scripts/ensure-deb-tool.sh hey hey "vroom bench drives the gateway with it" optional
	scripts/ensure-deb-tool.sh chromium chromium "the browser tests drive it with Playwright"
	scripts/ensure-deb-tool.sh promtool prometheus "the chart tests evaluate its alert rules with it"
	$(UV) run pytest

lint:
	$(UV) run ruff format --check . && $(UV) run ruff check . && $(UV) run mypy

format:
	$(UV) run ruff format . && $(UV) run ruff check --fix .

up:
	$(UV) run vroom up

down:
	$(UV) run vroom down

status:
	$(UV) run vroom status

# The main job: the local stack with a trained champion (synthetic fleet unless DATA_DIR).
run: setup
	$(UV) run vroom run $(if $(DATA_DIR),--data-dir $(DATA_DIR))

# Load benchmark with hey (installed on first use): the stack with a champion, then
# /predict, /predict/id and /predict/batch; table + JSON in .vroom/bench/.
bench: setup
	$(UV) run vroom bench $(if $(DATA_DIR),--data-dir $(DATA_DIR))

# Every set-up step is idempotent: a second `make test` or `make run` skips what is done.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: help setup system-deps venv controlplane lint typecheck test test-fast run testenv-down bench-queue clean

help:
	@echo "make run        set up, start the embedded control plane + Redis, say what to do next"
	@echo "make test       set up, lint, type-check and run the whole test suite"
	@echo "make test-fast  the unit tests only (no control plane, no redis-server)"
	@echo "make bench-queue  the work-queue benchmark (figures in loadtest/results/)"

setup: system-deps venv controlplane

system-deps:
	@scripts/install-system-deps.sh

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

controlplane:
	@tools/controlplane/build.sh

lint: venv
	$(VENV)/bin/ruff check shard_operator tests loadtest examples

typecheck: venv
	$(VENV)/bin/mypy

test: setup lint typecheck
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-fast: venv
	$(VENV)/bin/pytest -m "not controlplane and not redis and not slow" $(PYTEST_ARGS)

run: setup
	@$(VENV)/bin/shard-operator testenv up
	@echo
	@echo "The embedded control plane and Redis are running (stop them with: make testenv-down)."
	@echo "Point kubectl or the operator at them with:  eval \"\$$($(VENV)/bin/shard-operator testenv env --export)\""

testenv-down: venv
	@$(VENV)/bin/shard-operator testenv down

bench-queue: setup
	$(PY) -m loadtest.queue

clean:
	rm -rf $(VENV) tools/controlplane/bin .pytest_cache .mypy_cache .ruff_cache

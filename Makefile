# Every set-up step is idempotent: a second `make test` or `make run` skips what is done.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: help setup system-deps venv controlplane lint typecheck test test-fast run testenv-down bench-queue bench-e2e clean

help:
	@echo "make run        set up, then run the example operator on the embedded control plane + Redis"
	@echo "make test       set up, lint, type-check and run the whole test suite"
	@echo "make test-fast  the unit tests only (no control plane, no redis-server)"
	@echo "make bench-queue  the work-queue benchmark (figures in loadtest/results/)"
	@echo "make bench-e2e    the end-to-end benchmark: 1,000 Widgets through the whole pipeline"

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
	$(VENV)/bin/mypy && $(VENV)/bin/mypy --strict --follow-imports=silent examples/

test: setup lint typecheck
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-fast: venv
	$(VENV)/bin/pytest -m "not controlplane and not redis and not slow" $(PYTEST_ARGS)

# The example operator on the embedded control plane and Redis (started if not running). Stop with Ctrl-C;
# `make testenv-down` stops the environment. APP picks another operator (module:attribute).
APP ?= examples.widgets:operator
run: setup
	@$(VENV)/bin/shard-operator testenv up >/dev/null
	@eval "$$($(VENV)/bin/shard-operator testenv env --export)"; \
	  PYTHONPATH=. $(PY) -m examples.widgets install && \
	  echo "running $(APP) against the embedded control plane (KUBECONFIG=$$KUBECONFIG)" && \
	  echo "try: KUBECONFIG=$$KUBECONFIG kubectl apply -f - <<< '{\"apiVersion\":\"example.shard-operator.dev/v1\",\"kind\":\"Widget\",\"metadata\":{\"name\":\"w1\",\"namespace\":\"default\"},\"spec\":{\"size\":3}}'" && \
	  PYTHONPATH=. exec $(VENV)/bin/shard-operator run --app $(APP) --redis-url "$$REDIS_URL" \
	    --lease-namespace default --workers 2

testenv-down: venv
	@$(VENV)/bin/shard-operator testenv down

bench-queue: setup
	$(PY) -m loadtest.queue

bench-e2e: setup
	PYTHONPATH=. $(PY) -m loadtest.e2e

clean:
	rm -rf $(VENV) tools/controlplane/bin .pytest_cache .mypy_cache .ruff_cache

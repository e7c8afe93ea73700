# Every set-up step is idempotent: a second `make test` or `make run` skips what is done.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=

LOCK   := requirements-test.lock
# The image's runtime dependencies only (no extras), at the versions of $(LOCK), with hashes.
RUNTIME_LOCK := requirements.lock

.PHONY: help setup system-deps venv controlplane lock lint typecheck test test-fast run testenv-down bench-queue bench-e2e loadtest tools manifests clean

help:
	@echo "make run        set up, then run the example operator on the embedded control plane + Redis"
	@echo "make test       set up, lint, type-check and run the whole test suite (on Kubernetes 1.34, then"
	@echo "                the control-plane tests on 1.37)"
	@echo "make test-fast  the unit tests only (no control plane, no redis-server)"
	@echo "make loadtest   a short run of every load scenario and fault (about 6 minutes on 2 cores; reports in loadtest/results/)"
	@echo "make lock       refresh $(LOCK) and the image's $(RUNTIME_LOCK) (exact versions with hashes) from pyproject.toml's ranges"
	@echo "make bench-queue  the work-queue benchmark (figures in loadtest/results/)"
	@echo "make bench-e2e    the end-to-end benchmark: 1,000 Widgets through the whole pipeline"

setup: system-deps venv controlplane tools

system-deps:
	@scripts/install-system-deps.sh

venv: $(VENV)/.installed

# Exact versions with hashes from the lock, then the project itself without resolving anything again.
$(VENV)/.installed: pyproject.toml $(LOCK)
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --require-hashes -r $(LOCK)
	@# PYTHONWARNINGS: setuptools' notice that an editable install sits beside a folder of the same name.
	PYTHONWARNINGS=ignore $(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

# kube-apiserver, etcd and kube-controller-manager from the Go module shipped in the package
# (the same build as `shard-operator testenv build`), into the checkout's build folder.
# The other Go-built tools the tests use: kustomize (deploy overlays), promtool and prometheus (alerts,
# dashboard), toxiproxy (the load lab's network faults), KWOK (fake nodes and pods). Each is cached; never
# a prebuilt download.
tools:
	@tools/kustomize/build.sh
	@tools/prometheus/build.sh
	@tools/toxiproxy/build.sh
	@tools/kwok/build.sh

manifests: venv
	$(VENV)/bin/shard-operator manifests --app examples.website:operator --out deploy/base --monitoring-out deploy/monitoring

# Both supported Kubernetes versions: 1.34 (the default) and 1.37 (server-side sharded list and watch);
# each is skipped when up to date.
controlplane:
	@bash shard_operator/testing/controlplane_src/build.sh --dest tools/controlplane/bin
	@bash shard_operator/testing/controlplane_src/build.sh --kubernetes-version 1.37 --dest tools/controlplane-1.37/bin

# Re-resolve the test environment within pyproject.toml's version ranges (newest allowed versions)
# and pin it with hashes. Commit the result; `make setup` and CI install exactly that.
lock: venv
	$(PY) -m pip install -q --disable-pip-version-check 'uv>=0.5'
	$(VENV)/bin/uv pip compile pyproject.toml --extra test --extra testenv --extra loadtest --extra manifests --generate-hashes --universal \
	  --python-version 3.11 --upgrade --quiet -o $(LOCK)
	$(VENV)/bin/uv pip compile pyproject.toml --generate-hashes --universal --python-version 3.11 -c $(LOCK) \
	  --upgrade --quiet -o $(RUNTIME_LOCK)

lint: venv
	$(VENV)/bin/ruff check shard_operator tests loadtest examples
	$(VENV)/bin/lint-imports

typecheck: venv
	$(VENV)/bin/mypy && $(VENV)/bin/mypy --strict --follow-imports=silent examples/

# The whole suite on Kubernetes 1.34, then every test that starts a control plane again on 1.37.
test: setup lint typecheck
	$(VENV)/bin/pytest $(PYTEST_ARGS)
	$(VENV)/bin/pytest -m controlplane --kubernetes-version 1.37 $(PYTEST_ARGS)

test-fast: venv
	$(VENV)/bin/pytest -m "not controlplane and not redis and not slow" $(PYTEST_ARGS)

# The example operator on the embedded control plane and Redis (started if not running). Stop with Ctrl-C;
# `make testenv-down` stops the environment. APP picks another operator (module:attribute).
APP ?= examples.widgets:operator
# The health and metrics server takes port 8080, or a free port when 8080 is taken (METRICS_PORT picks another).
METRICS_PORT ?= 8080
run: setup
	@$(VENV)/bin/shard-operator testenv up >/dev/null
	@eval "$$($(VENV)/bin/shard-operator testenv env --export)"; \
	  port=$$($(PY) scripts/free-port.py $(METRICS_PORT)); \
	  PYTHONPATH=. $(PY) -m examples.widgets install && \
	  echo "running $(APP) against the embedded control plane (KUBECONFIG=$$KUBECONFIG)" && \
	  echo "health and metrics: http://127.0.0.1:$$port/healthz  http://127.0.0.1:$$port/metrics" && \
	  echo "try: KUBECONFIG=$$KUBECONFIG kubectl apply -f - <<< '{\"apiVersion\":\"example.shard-operator.dev/v1\",\"kind\":\"Widget\",\"metadata\":{\"name\":\"w1\",\"namespace\":\"default\"},\"spec\":{\"size\":3}}'" && \
	  PYTHONPATH=. exec $(VENV)/bin/shard-operator run --app $(APP) --metrics-address ":$$port" \
	    --lease-namespace default --workers 2

testenv-down: venv
	@$(VENV)/bin/shard-operator testenv down

bench-queue: setup
	$(PY) -m loadtest.queue

bench-e2e: setup
	PYTHONPATH=. $(PY) -m loadtest.e2e

clean:
	rm -rf $(VENV) tools/controlplane/bin tools/controlplane-1.37/bin .pytest_cache .mypy_cache .ruff_cache

# The KWOK step runs even when the suite broke a gate; make fails if either did.
loadtest: setup
	PYTHONPATH=. $(PY) -m loadtest suite; suite=$$?; \
	PYTHONPATH=. $(PY) -m loadtest kwok --nodes 20 --pods 400; kwok=$$?; \
	exit $$((suite || kwok))

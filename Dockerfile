# The operator image: the library, its command and the example operators, run as a non-root user.
#   docker build -t shard-operator:dev .          (scripts/kind-up.sh builds and loads it into kind)
# Two stages: the build stage installs the package into a virtual environment; the final stage copies
# only that environment onto the same slim base, so no pip cache or build files ship.
# The runtime dependencies come from requirements.lock (exact versions with hashes, `make lock`: the versions
# the tests ran), then the package itself without resolving anything again.
FROM python:3.11.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/shard-operator
WORKDIR /src
COPY requirements.lock ./
RUN /opt/shard-operator/bin/pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY shard_operator ./shard_operator
RUN /opt/shard-operator/bin/pip install --no-cache-dir --no-deps .

FROM python:3.11.11-slim-bookworm
COPY --from=build /opt/shard-operator /opt/shard-operator
WORKDIR /app
# `examples` is imported by --app from the working directory.
COPY examples ./examples
ENV PATH=/opt/shard-operator/bin:$PATH PYTHONPATH=/app PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# The numeric user the manifests' runAsUser names; nothing in the image is writable by it.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["shard-operator"]
CMD ["run", "--app", "examples.website:operator"]

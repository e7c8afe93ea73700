# The operator image: the library, its command and the example operator. Build with
#   docker build -t shard-operator:latest .
# and load it into kind with `kind load docker-image shard-operator:latest`.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shard_operator ./shard_operator
COPY examples ./examples
RUN pip install --no-cache-dir . && useradd --uid 65532 --no-create-home operator
# `examples` is imported by --app from the working directory.
ENV PYTHONPATH=/app PYTHONUNBUFFERED=1
USER 65532
EXPOSE 8080
ENTRYPOINT ["shard-operator"]
CMD ["run", "--app", "examples.widgets:operator"]

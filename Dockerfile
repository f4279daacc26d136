# The operator's image: multi-stage, non-root, nothing but Python, the package and its
# dependencies. Build: docker build -t nodecluster-operator:0.1.0 .
# The Helm chart runs it with a read-only root filesystem: /tmp and the simulator's state
# directory are emptyDirs, and no byte code is written at run time (it is compiled here).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Metadata first, so that a code change does not invalidate the dependency layer.
COPY pyproject.toml README.md ./
COPY operator ./operator
# With the `aws` extra: the EC2 driver (aiobotocore) is part of the image.
RUN pip install '.[aws]' \
 && python -m compileall -q /opt/venv

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="nodecluster-operator" \
      org.opencontainers.image.description="Keeps groups of compute nodes at the size and state their owners declare" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    NODECLUSTER_SIMULATOR_DIR=/var/lib/nodecluster-operator/simulator
COPY --from=builder /opt/venv /opt/venv
RUN mkdir -p /var/lib/nodecluster-operator/simulator \
 && chown 65532:65532 /var/lib/nodecluster-operator/simulator
# A numeric user, so that Kubernetes can verify runAsNonRoot without an /etc/passwd entry.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["nodecluster-operator"]
CMD ["run", "--liveness", "http://0.0.0.0:8080/healthz"]

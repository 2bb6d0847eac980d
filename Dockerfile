# syntax=docker/dockerfile:1
# Uptake server image: one image, every role of `uptake-server`
#   serve (ingestion, default), kpi (KPI exporter), migrate, simulate, events.
# Build:  docker build -t uptake-server:0.1.0 .
# Run:    docker run --rm uptake-server:0.1.0 --help
ARG PYTHON_IMAGE=python:3.11-slim-trixie

# Builder: wheels of the SDK and the server (and of every dependency), installed
# into a virtual environment that the final stage copies as it is.
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY sdk/pyproject.toml sdk/README.md sdk/
COPY sdk/src sdk/src
COPY pyproject.toml README.md ./
COPY server server
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels ./sdk . \
    && python -m venv /opt/uptake \
    && /opt/uptake/bin/python -m pip install --no-cache-dir --no-index --find-links /wheels /wheels/*.whl \
    && /opt/uptake/bin/python -m pip uninstall --yes pip

# Final: the slim Python runtime, the virtual environment, a non-root user.
# No compiler, no package manager caches, no pip.
FROM ${PYTHON_IMAGE}
RUN python -m pip uninstall --yes pip setuptools wheel \
    && groupadd --system --gid 10001 uptake \
    && useradd --system --uid 10001 --gid uptake --no-create-home \
       --home-dir /var/lib/uptake --shell /usr/sbin/nologin uptake \
    && install --directory --owner uptake --group uptake --mode 0750 /var/lib/uptake
COPY --from=builder /opt/uptake /opt/uptake
ENV PATH=/opt/uptake/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UPTAKE_DATA_DIR=/var/lib/uptake \
    UPTAKE_GRPC_LISTEN=0.0.0.0:50051 \
    UPTAKE_METRICS_LISTEN=0.0.0.0:9464
WORKDIR /var/lib/uptake
USER 10001:10001
EXPOSE 50051 9464
ENTRYPOINT ["uptake-server"]
CMD ["serve"]

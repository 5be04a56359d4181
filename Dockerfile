# syntax=docker/dockerfile:1
# The surge replenishment worker. Build: docker build -t surge-replenishment:dev .
# Runs `surge worker`; any other subcommand replaces the CMD (e.g. `generate`).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: one wheel for the project and one for every dependency -------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# README.md* matches nothing when the file is absent; pyproject.toml keeps COPY valid.
COPY pyproject.toml README.md* ./
COPY app ./app
# rocksdict is Faust's RocksDB driver (SURGE_STORE=rocksdb://), used by the k8s base.
ARG EXTRA_PACKAGES="rocksdict"
RUN python -m pip wheel --wheel-dir /wheels . ${EXTRA_PACKAGES}

# --- runtime: no compiler, no sources, no root ----------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG EXTRA_PACKAGES="rocksdict"
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/var/lib/surge \
    SURGE_WEB_HOST=0.0.0.0 \
    SURGE_WEB_PORT=6066 \
    SURGE_DATA_DIR=/var/lib/surge/data

RUN groupadd --system --gid 10001 surge \
    && useradd --system --uid 10001 --gid surge --home-dir /var/lib/surge \
        --shell /usr/sbin/nologin surge \
    && mkdir -p /var/lib/surge/data \
    && chown -R surge:surge /var/lib/surge

RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels surge-replenishment ${EXTRA_PACKAGES}

WORKDIR /var/lib/surge
USER 10001:10001
EXPOSE 6066

# /health answers while the worker's event loop runs; urllib raises (exit 1) on non-2xx.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('SURGE_WEB_PORT', '6066') + '/health', timeout=4)"]

# Exec form: SIGTERM reaches the worker directly, which finishes the batch and commits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["surge"]
CMD ["worker"]

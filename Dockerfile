# syntax=docker/dockerfile:1
#
# One image for every cdrflow process: the all-in-one runner (default CMD),
# each service (`cdrflow serve ingest --host 0.0.0.0 --port 8001`, ...) and
# operator tasks (`cdrflow migrate`).
#
#   docker build -t cdrflow .
#   docker run --rm -p 8000:8000 cdrflow
#
# Both stages must use the same base image: the virtualenv copied into the
# runtime stage points at the base image's /usr/local/bin/python3.11.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build

ARG UV_VERSION=0.13.9
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy

RUN pip install "uv==${UV_VERSION}"

WORKDIR /src

# Third-party dependencies first, in their own layer: it is rebuilt only when
# the lock changes. --frozen installs exactly what uv.lock says without
# re-resolving, which is also what lets this step run before the workspace
# members' own pyproject.toml files are copied in.
COPY pyproject.toml uv.lock .python-version ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace

# Then the workspace itself (cdrflow, libs/*, services/*), installed as
# ordinary wheels (--no-editable) so the runtime stage needs only the venv,
# not /src. Package data inside the import packages (Alembic migrations, ...)
# travels with the wheels.
COPY . .
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable


FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="cdrflow" \
      org.opencontainers.image.description="Call Detail Record platform: ingest, parse, rate, watch and find recordings of every call." \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed numeric uid/gid so Kubernetes' runAsUser/fsGroup and volume
# ownership can name it. /var/lib/cdrflow is the data dir (spool, claim
# checks, recordings root); creating it here, owned by that user, means a
# named Docker volume mounted on it starts out writable by the app.
RUN groupadd --system --gid 10001 cdrflow \
 && useradd --system --uid 10001 --gid cdrflow --home-dir /var/lib/cdrflow \
        --no-create-home --shell /usr/sbin/nologin cdrflow \
 && install -d -o cdrflow -g cdrflow -m 0750 /var/lib/cdrflow

# Owned by root and read-only for the app: code cannot be rewritten at run time.
COPY --from=build /app/.venv /app/.venv

# Bytecode was compiled at build time; the root filesystem may be read-only.
# PROMETHEUS_DISABLE_CREATED_SERIES: no *_created series beside every counter
# and histogram on /metrics.
ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CDRFLOW_DATA_DIR=/var/lib/cdrflow \
    CDRFLOW_LOG_FORMAT=json \
    PROMETHEUS_DISABLE_CREATED_SERIES=True

WORKDIR /app
USER 10001:10001

# 8000 all-in-one; 8001 ingest, 8002 parser, 8003 billing, 8004 stats, 8005 recordings.
EXPOSE 8000-8005

# slim has no curl: ask the process itself with the stdlib. The port defaults
# to the all-in-one 8000; a single service started with `serve NAME --port N`
# should set CDRFLOW_PORT=N too (compose and Kubernetes define their own checks).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('CDRFLOW_PORT', '8000'), timeout=4)"]

ENTRYPOINT ["cdrflow"]
CMD ["run", "--host", "0.0.0.0"]

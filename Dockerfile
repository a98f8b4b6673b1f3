# syntax=docker/dockerfile:1.7
# RelayPACS image: the API + PWA (`relaypacs serve`) and the job worker (`relaypacs worker`).
#   docker build -t relaypacs:latest .          (docs/deploy.md)
# Stages: the PWA is built with Node, the Python environment with uv from uv.lock (production
# dependencies only), and the runtime is a slim Python image running as an unprivileged user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:20-bookworm-slim

# ---------------------------------------------------------------- the PWA
FROM ${NODE_IMAGE} AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run build

# ---------------------------------------------------------------- the Python environment
FROM ${PYTHON_IMAGE} AS python-build
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
RUN pip install --no-cache-dir "uv>=0.5,<1"
WORKDIR /src
# Dependencies first: this layer is reused until uv.lock changes.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY src/ ./src/
RUN uv sync --frozen --no-dev --no-editable

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="RelayPACS" \
      org.opencontainers.image.description="Resumable DICOM upload gateway forwarding to a PACS with STOW-RS" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 relaypacs \
 && useradd --system --uid 10001 --gid relaypacs --home-dir /var/lib/relaypacs \
            --no-create-home --shell /usr/sbin/nologin relaypacs \
 && mkdir -p /var/lib/relaypacs /run/relaypacs/metrics \
 && chown -R relaypacs:relaypacs /var/lib/relaypacs /run/relaypacs
COPY --from=python-build /app/.venv /app/.venv
COPY --from=web /web/dist /app/web/dist
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RELAYPACS_HOST=0.0.0.0 \
    RELAYPACS_PORT=8080 \
    RELAYPACS_DATA_DIR=/var/lib/relaypacs \
    RELAYPACS_WEB_DIR=/app/web/dist
WORKDIR /app
USER 10001:10001
VOLUME ["/var/lib/relaypacs"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/healthz', timeout=3)"]
CMD ["relaypacs", "serve"]

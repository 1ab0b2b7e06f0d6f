# converter: Debian with LibreOffice, python3-uno, poppler and fonts; gunicorn via `converter serve`
# under tini. Layers go from the least to the most often changed: system packages, the pinned
# Python dependencies (pyproject.toml + constraints.txt), then the code.
# Build with docker, or with podman/buildah given --format docker (the OCI format drops HEALTHCHECK).
FROM debian:12-slim

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CONVERTER_HOST=0.0.0.0 \
    CONVERTER_PORT=8080 \
    CONVERTER_DATA_DIR=/var/lib/converter

# fonts-noto-core: Arabic, Hebrew, Devanagari and Thai (and most other scripts) instead of
# DejaVu fallback or boxes. tini is PID 1: it reaps orphaned LibreOffice children and passes
# SIGTERM to gunicorn, which then shuts down gracefully.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libreoffice-core libreoffice-writer libreoffice-calc libreoffice-impress \
      python3-uno python3-venv poppler-utils tini libjemalloc2 \
      fonts-dejavu fonts-liberation fonts-noto-cjk fonts-noto-core \
      fonts-crosextra-carlito fonts-crosextra-caladea \
 && rm -rf /var/lib/apt/lists/*

# A fixed uid, so a bind-mounted data directory can be prepared for it: chown 10001:10001.
RUN groupadd --gid 10001 converter \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/converter \
      --shell /usr/sbin/nologin converter \
 && mkdir -p /var/lib/converter && chown 10001:10001 /var/lib/converter

# Dependencies only: this layer is rebuilt when pyproject.toml or constraints.txt change,
# not on every code change. Debian's Python with system site packages: the engine bridge
# needs its uno module.
WORKDIR /app
COPY pyproject.toml constraints.txt tools/pyproject_deps.py ./
RUN /usr/bin/python3 -m venv --system-site-packages /app/.venv \
 && /usr/bin/python3 pyproject_deps.py pyproject.toml >requirements.txt \
 && /app/.venv/bin/pip install -c constraints.txt -r requirements.txt setuptools

# The code, installed as a regular package (no editable link back to /app/src).
COPY converter ./src/converter
RUN cp pyproject.toml ./src/ \
 && /app/.venv/bin/pip install --no-deps --no-build-isolation ./src \
 && rm -rf ./src

# `docker exec <container> converter keys create ...` finds the console script.
ENV PATH=/app/.venv/bin:$PATH
USER 10001:10001
VOLUME /var/lib/converter
EXPOSE 8080

# `converter healthcheck` asks /readyz on CONVERTER_HOST:CONVERTER_PORT, so it follows the port.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["/app/.venv/bin/converter", "healthcheck"]

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["/app/.venv/bin/converter", "serve"]

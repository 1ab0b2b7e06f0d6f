# converter: Debian with LibreOffice, python3-uno, poppler and fonts; gunicorn via `converter serve`.
FROM debian:12-slim

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    CONVERTER_HOST=0.0.0.0 \
    CONVERTER_PORT=8080 \
    CONVERTER_DATA_DIR=/var/lib/converter

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libreoffice-core libreoffice-writer libreoffice-calc libreoffice-impress \
      python3-uno python3-venv poppler-utils curl \
      fonts-dejavu fonts-liberation fonts-noto-cjk fonts-crosextra-carlito fonts-crosextra-caladea \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md conversion_matrix.yaml ./
COPY converter ./converter
# Debian's Python with system site packages: the engine bridge needs its uno module.
RUN /usr/bin/python3 -m venv --system-site-packages /app/.venv \
 && /app/.venv/bin/pip install --no-cache-dir -e .

RUN useradd --system --home /var/lib/converter converter \
 && mkdir -p /var/lib/converter && chown converter /var/lib/converter
USER converter
VOLUME /var/lib/converter
EXPOSE 8080

HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/readyz || exit 1

CMD ["/app/.venv/bin/converter", "serve"]

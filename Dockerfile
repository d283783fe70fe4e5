# syntax=docker/dockerfile:1
# Build: docker build -t deploybot .   Run: see README › Operations (docker-compose.yml adds PostgreSQL).
# Multi-stage and slim; runs as an unprivileged user; the checklists are validated at build time.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PORT=3000 \
    DEPLOYBOT_CHECKLISTS=/app/checklists \
    DATABASE_URL=sqlite:////data/deploybot.db
COPY --from=build /install /usr/local
WORKDIR /app
COPY checklists ./checklists
# Refuse to build an image whose checklists are invalid or break Slack's limits.
RUN deploybot check /app/checklists
RUN useradd --system --no-log-init --uid 10001 --home-dir /app deploybot && mkdir /data && chown 10001 /data
USER 10001
VOLUME ["/data"]
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '3000')}/healthz\", timeout=2)"]
ENTRYPOINT ["deploybot"]
CMD ["run"]

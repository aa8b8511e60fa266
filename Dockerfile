# Flow Executor (Backend 1): `docker build -t flow-executor-backend1 .`
# `docker run -p 8000:8000 --env-file .env flow-executor-backend1`
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 flow
WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY --chown=flow:flow . .
USER flow

EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8000/health || exit 1
# `serve run` starts a local Ray instance, the deployment, and the HTTP proxy on 0.0.0.0:8000
# (`serve run` has no --host option: Serve reads the proxy's host from this variable).
ENV RAY_SERVE_DEFAULT_HTTP_HOST=0.0.0.0
ENTRYPOINT ["serve", "run", "serve_app:app"]

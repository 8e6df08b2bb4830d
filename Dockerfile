# The vmsnap worker image: `python worker.py` as an unprivileged user.
# Build: docker build -t vmsnap-worker:0.1.0 .   (docker-compose.yml does it for you)

# ---- build: install vmsnap and its dependencies into a virtual environment ----
# The context holds no simulator/ or demo/ (.dockerignore), so neither is installed; the
# codec-server extra adds aiohttp for `python -m starter.codec_server`, the console extra
# Starlette, uvicorn and Jinja2 for `vmsnap console` (docker-compose.yml, deploy/console).
FROM python:3.11.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/vmsnap
WORKDIR /src
COPY . .
RUN /opt/vmsnap/bin/pip install '.[codec-server,console]'

# ---- runtime: the environment, the entry script, no build tools, no root ----
FROM python:3.11.11-slim-bookworm
ENV PATH=/opt/vmsnap/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    KUBECONFIG=/etc/vmsnap/kubeconfig
RUN groupadd --system --gid 10001 vmsnap \
 && useradd --system --uid 10001 --gid vmsnap --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin vmsnap
COPY --from=build /opt/vmsnap /opt/vmsnap
WORKDIR /app
COPY --chown=root:root worker.py ./
USER 10001:10001
CMD ["python", "worker.py"]

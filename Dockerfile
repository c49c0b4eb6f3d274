# syntax=docker/dockerfile:1
# The Ballast agent image. Stages:
#   build     builds the wheel (the ABIs of contracts_abi/ ship inside it as agent/contracts_abi/)
#   runtime   slim Python with the wheel in /opt/ballast, non-root, tini as PID 1
#   localnet  runtime + Node.js and deploy/localnet's npm packages, for `ballast localnet up` (docker compose)
#   agent     the default target: the daemon
# Policies and the keystore are mounted at run time, never baked in:
#   docker build -t ballast .
#   docker run -v "$PWD/policies:/etc/ballast/policies:ro" -v ballast-journal:/var/lib/ballast \
#     -v "$PWD/secrets:/run/secrets/ballast:ro" -e BALLAST_KEYSTORE=/run/secrets/ballast/keystore.json \
#     -e BALLAST_KEYSTORE_PASSWORD_FILE=/run/secrets/ballast/password -p 127.0.0.1:9108:9108 ballast
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
# Exactly what the wheel is built from (tests/e2e/test_wheel_install.py builds from these same paths).
COPY pyproject.toml README.md ./
COPY agent/ agent/
COPY contracts_abi/ contracts_abi/
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM ${PYTHON_IMAGE} AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 ballast \
    && useradd --system --uid 10001 --gid ballast --home-dir /var/lib/ballast --no-create-home \
       --shell /usr/sbin/nologin ballast
ENV VIRTUAL_ENV=/opt/ballast \
    PATH=/opt/ballast/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN --mount=type=bind,from=build,source=/dist,target=/dist \
    python -m venv /opt/ballast \
    && /opt/ballast/bin/pip install --no-cache-dir /dist/*.whl \
    && ballast --version
# /var/lib/ballast: the journal and the kill switch (mount a volume: the journal must outlive the container).
# /etc/ballast/policies: mount the policies here. /state: `ballast localnet up` output (compose only).
RUN mkdir -p /etc/ballast/policies /var/lib/ballast /state \
    && chown ballast:ballast /var/lib/ballast /state
ENV BALLAST_METRICS_ADDR=0.0.0.0:9108 \
    BALLAST_DB=/var/lib/ballast/ballast.sqlite \
    BALLAST_KILL_SWITCH=/var/lib/ballast/KILL \
    BALLAST_STATE_DIR=/state \
    BALLAST_LOG_FORMAT=json
WORKDIR /var/lib/ballast
USER 10001:10001
EXPOSE 9108
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4)"]
ENTRYPOINT ["tini", "--", "ballast"]
CMD ["run", "--policy", "/etc/ballast/policies"]

FROM runtime AS localnet
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*
# The localnet tooling finds deploy/localnet next to the agent package's source tree, so this stage runs the
# agent from a copy of the sources (ahead of the installed wheel on the path) with the npm packages beside it.
WORKDIR /opt/ballast-src
COPY deploy/localnet/package.json deploy/localnet/package-lock.json deploy/localnet/compile.cjs deploy/localnet/
RUN cd deploy/localnet && npm ci --no-audit --no-fund --loglevel=error && npm cache clean --force
COPY deploy/localnet/contracts/ deploy/localnet/contracts/
COPY contracts/ contracts/
COPY agent/ agent/
COPY contracts_abi/ contracts_abi/
ENV PYTHONPATH=/opt/ballast-src
# Compile the local reference contracts and the keeper module now, into the cache the agent reads (the running
# user cannot write here).
RUN python -c "from agent.localnet.artifacts import artifact; artifact('LocalPriceFeed')" \
    && ls deploy/localnet/build/contracts-*.json
WORKDIR /var/lib/ballast
USER 10001:10001
# Anvil listens on 127.0.0.1:8545 inside this container; compose runs the agent in the same network namespace.
# A stale localnet.json from an earlier run is removed first, so the health check means "deployed and seeded".
HEALTHCHECK --interval=2s --timeout=2s --start-period=120s --retries=3 CMD ["test", "-f", "/state/localnet.json"]
ENTRYPOINT ["tini", "--", "sh", "-c", "rm -f /state/localnet.json && exec ballast \"$@\"", "ballast"]
CMD ["localnet", "up", "--state-dir", "/state", "--port", "8545"]

FROM runtime AS agent

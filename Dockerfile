# syntax=docker/dockerfile:1
# postsale's image: one stage builds the virtualenv (durable_rules compiles from its sdist),
# a slim stage runs it as an unprivileged user. The build step is deploy/build-venv.sh, which
# `make test` also runs in a fresh venv. Usage and compose: docs/deploy.md.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc g++ make \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY requirements.txt pyproject.toml README.md ./
COPY deploy/build-venv.sh deploy/
COPY engine/ engine/
COPY adapters/ adapters/
COPY api/ api/
COPY config/ config/
COPY service/ service/
COPY cli/ cli/
COPY migrations/ migrations/
COPY rules/ rules/
COPY models/ models/
COPY simulator/ simulator/
RUN sh deploy/build-venv.sh /opt/postsale .

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 postsale \
 && useradd --system --uid 10001 --gid postsale --home-dir /var/lib/postsale --create-home postsale
COPY --from=build /opt/postsale /opt/postsale
ENV PATH=/opt/postsale/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    POSTSALE_DATA_DIR=/var/lib/postsale
USER 10001:10001
WORKDIR /var/lib/postsale
EXPOSE 8000
# ready = the database answers, the rules are loaded and the triggers load (GET /readyz);
# worker and consume serve no HTTP: compose.yaml gives them their own check
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('PORT', '8000'), timeout=2)"]
ENTRYPOINT ["postsale"]
CMD ["serve"]

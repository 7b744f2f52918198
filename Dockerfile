# One image for every service of the stack: the command picks the service
# (`python -m services.detector`, `... services.gateway`, ...), so there is one thing to build, scan
# and ship. Models and datasets are never baked in: they are mounted at run time (/models, /datasets).
#
# No HEALTHCHECK here: each service answers on its own protocol and port (gRPC health on 50051-50053,
# HTTP /readyz on 8080), which one image cannot know. docker-compose.yml gives each service its probe,
# `python -m services.common.healthcheck ...`, which this image carries.
#
#   docker build -t visualsearch:dev .     # BuildKit (Docker >= 23 default) for the pip cache mounts

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# Dependencies first, from the project's own list pinned by the tested constraints: the heavy layer
# (onnxruntime, faiss, grpc) is rebuilt only when pyproject.toml or the constraints change, not on
# every code edit.
# VS_EXTRAS: optional-dependency groups baked in too. `milvus` (default) lets the one image run the
# indexer on Milvus (VS_INDEXER_BACKEND=milvus); `--build-arg VS_EXTRAS=` builds without it (~250 MB less).
ARG VS_EXTRAS=milvus
COPY pyproject.toml ./
COPY requirements/constraints.txt requirements/
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c "import sys, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + [d for e in sys.argv[1].split(',') if e for d in p['optional-dependencies'][e]]))" \
        "${VS_EXTRAS}" > /tmp/requirements.txt \
 && pip install -c requirements/constraints.txt -r /tmp/requirements.txt

COPY services ./services
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps -c requirements/constraints.txt .


FROM ${PYTHON_IMAGE} AS runtime
# onnxruntime (>= 1.29 on Linux) otherwise uploads usage telemetry from every model service and
# tries to write a device id under $HOME: neither belongs in a production container.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ORT_DISABLE_TELEMETRY=1 \
    PATH=/opt/venv/bin:$PATH \
    VS_MODELS_DIR=/models \
    VS_DATA_DIR=/data

# A fixed uid/gid so bind-mounted host folders and named volumes can be given to it on purpose.
# /data is created owned by it: a fresh named volume copies this ownership, so the indexer can write.
RUN groupadd --system --gid 10001 visualsearch \
 && useradd --system --uid 10001 --gid visualsearch --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin visualsearch \
 && mkdir -p /app /data /models \
 && chown visualsearch:visualsearch /data

# The venv stays root-owned: the service user can run the code but not change it.
COPY --from=builder /opt/venv /opt/venv
# Fails the build, not the first start, if a native library the wheels need is missing from slim.
RUN python -c "import faiss, grpc, numpy, onnxruntime, PIL, services.common.healthcheck"

WORKDIR /app
USER 10001:10001

# The public entry point by default; compose sets the command of every other service.
CMD ["python", "-m", "services.gateway"]

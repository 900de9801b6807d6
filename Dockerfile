# syntax=docker/dockerfile:1
# Image classifier service. Two targets from one file:
#   serve (the default, last stage): the service without TensorFlow (ONNX Runtime, OpenVINO)
#   train: TensorFlow as well, for training, retraining and serving on a GPU
#          (CPU TensorFlow by default; CUDA: --build-arg TF_VARIANT=gpu)
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS source
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies come from the project's own pyproject.toml, where every one is pinned with
# bounds: there is no second list to drift (hence DL3013 does not apply).
COPY pyproject.toml README.md ./
COPY classifier ./classifier
COPY service ./service
COPY training ./training
COPY client ./client

FROM source AS build-serve
# hadolint ignore=DL3013
RUN pip install .

FROM source AS build-train
ARG TF_VARIANT=cpu
# hadolint ignore=DL3013
RUN pip install ".[${TF_VARIANT}]"

FROM python:${PYTHON_VERSION}-slim-bookworm AS base
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    MODELS_DIR=/models \
    HOST=0.0.0.0 \
    PORT=8000 \
    GRPC_PORT=8001 \
    FEEDBACK_DIR=/feedback
# /feedback: labelled feedback and captured requests (a volume; a named one starts owned by
# the app's user, as this folder is)
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home app \
    && install -d -o 10001 -g 10001 /feedback
WORKDIR /app
# HTTP (REST), and gRPC (the Open Inference Protocol, grpc.health.v1, reflection)
EXPOSE 8000 8001
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]
CMD ["classifier-serve"]

FROM base AS train
COPY --from=build-train /opt/venv /opt/venv
COPY --chown=10001:10001 classifier ./classifier
COPY --chown=10001:10001 service ./service
COPY --chown=10001:10001 training ./training
COPY --chown=10001:10001 models /models
USER 10001:10001

FROM base AS serve
COPY --from=build-serve /opt/venv /opt/venv
# The shipped model; a named volume mounted on /models starts as a copy of it.
COPY --chown=10001:10001 models /models
USER 10001:10001

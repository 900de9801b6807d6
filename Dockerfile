# Image classifier service. Two targets from one file:
#   serve (the default, last stage): the service without TensorFlow (ONNX Runtime, OpenVINO),
#          with the shipped versions that have a model.onnx, without their Keras files
#   train: TensorFlow as well, for training, retraining and serving on a GPU
#          (CPU TensorFlow by default; CUDA: --build-arg TF_VARIANT=gpu), all shipped files
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS venv
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
# Dependencies come from the project's own pyproject.toml, where every one is pinned with
# bounds: there is no second list to drift (hence DL3013 does not apply). They are installed
# first, through the project without its code (and an empty README, which its metadata
# names), then the project alone: a change to the code or the README rebuilds only that
# last, small layer, not the wheels under it.
WORKDIR /deps
COPY pyproject.toml ./

FROM venv AS deps-serve
# hadolint ignore=DL3013
RUN touch README.md && pip install . && pip uninstall --yes image-classifier-service

# The trainer's dependencies add TensorFlow and the training libraries to the serving ones.
FROM deps-serve AS deps-train
ARG TF_VARIANT=cpu
# hadolint ignore=DL3013
RUN pip install ".[${TF_VARIANT}]" && pip uninstall --yes image-classifier-service

# The project itself, as both environments install it.
FROM scratch AS code
COPY pyproject.toml README.md /src/
COPY classifier /src/classifier
COPY service /src/service
COPY training /src/training
COPY client /src/client

FROM deps-serve AS build-serve
COPY --from=code /src /src
WORKDIR /src
RUN pip install --no-deps .

FROM deps-train AS build-train
COPY --from=code /src /src
WORKDIR /src
RUN pip install --no-deps .

# The serving environment without what serving never loads (docs/benchmarks.md, "The images"):
# pip and setuptools (the installs are done), the wheels' test suites, OpenVINO's GPU and NPU
# plugins (with the GPU's kernel cache), its frontends but ONNX and IR, and its C headers, and
# ONNX Runtime's C library (its Python binding carries its own copy). The container test
# (tests/containers) serves with both runtimes from it.
FROM build-serve AS venv-serve
ARG PYTHON_VERSION
WORKDIR /opt/venv/lib/python${PYTHON_VERSION}/site-packages
RUN pip uninstall --yes pip setuptools \
    && find . -depth -type d -name tests -exec rm -r {} + \
    && rm -r openvino/include openvino/libs/cache.json openvino/libs/libopenvino_intel_[gn]pu_plugin.so \
    && find openvino/libs -name 'libopenvino_*_frontend.so*' \
        ! -name 'libopenvino_onnx_frontend.so*' ! -name 'libopenvino_ir_frontend.so*' -delete \
    && rm onnxruntime/capi/libonnxruntime.so.*

# The serving image's copy of the shipped models: the newest version of each with a model.onnx
# (what the default policy serves; --build-arg SERVE_VERSIONS=all: every one), without its
# Keras file (ONNX Runtime and OpenVINO read model.onnx), each checked as the store will.
FROM build-serve AS models-serve
ARG SERVE_VERSIONS=newest
COPY models ./models
RUN python -m classifier.serving_copy --versions "${SERVE_VERSIONS}" models /models

FROM python:${PYTHON_VERSION}-slim-bookworm AS base
# HOME is /tmp: with a read-only root (docker run --read-only --tmpfs /tmp, Kubernetes'
# readOnlyRootFilesystem) what gunicorn (its control socket) and matplotlib write goes there.
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    MODELS_DIR=/models \
    HOST=0.0.0.0 \
    PORT=8000 \
    GRPC_PORT=8001
# /store: where a seeding step mounts an empty model store volume, owned by the app user so
# that a new volume is (docker-compose.yml's models-init; deploy/k8s/base/seed_models.py).
# /feedback: where compose and Kubernetes mount the feedback volume (FEEDBACK_DIR, off unless
# set): a named volume starts owned by the app's user, as this folder is.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /tmp --no-create-home app \
    && install -d -o app -g app /store /feedback
WORKDIR /app
# HTTP (REST), and gRPC (the Open Inference Protocol, grpc.health.v1, reflection)
EXPOSE 8000 8001
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]
CMD ["classifier-serve"]

FROM base AS train
COPY --from=build-train /opt/venv /opt/venv
COPY --chown=10001:10001 models /models
USER 10001:10001

FROM base AS serve
COPY --from=venv-serve /opt/venv /opt/venv
# A named volume mounted on /models starts as a copy of these (docker-compose.yml seeds its
# volume with models-init instead, once, before any replica starts).
COPY --from=models-serve --chown=10001:10001 /models /models
USER 10001:10001

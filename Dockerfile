# bninception: one Dockerfile, three targets. All run as a non-root user (uid 10001), check
# /v2/health/ready (HEALTHCHECK) and start through docker/entrypoint.sh (`docker run IMAGE COMMAND ARGS`).
#
# serve: the server alone, for replicas in a cluster: ONNX Runtime (CPU; ORT_PACKAGE=onnxruntime-openvino
#      for OpenVINO), numpy, the image decoders and the HTTP/gRPC stack; no torch, nothing that only
#      training, calibration or validation needs. Serves a run directory or a model file mounted
#      read-only; runs with a read-only root filesystem (deploy/). Tested by `make docker-test`.
#   docker build --target serve --build-arg BASE_IMAGE=debian:bookworm-slim -t bninception:serve .
#
# cpu: FROM a Debian bookworm image given as BASE_IMAGE, ONNX Runtime CPU (the [cpu] extra).
#      Trains, validates and serves on CPU hosts. Built and run in a real Docker engine by
#      `make docker-test` (tests/docker/test_cpu_image.py).
#   docker build --target cpu --build-arg BASE_IMAGE=debian:bookworm-slim -t bninception:cpu .
#
# gpu: FROM the NGC TensorRT image, onnxruntime-gpu built against that TensorRT. `docker build` has
#      no GPU, so the entrypoint builds, at container start and into the /cache volume, the engines
#      the command will use, and reuses them by key. Checked statically here (hadolint, tests).
#   docker build --target gpu -t bninception:gpu .
#
# Build inputs for restricted networks (docker/local/README.md): docker/local/pip-ca.pem (a CA
# bundle for pip) and docker/local/wheels/*.whl (a torch CPU wheel). Only the build stages read them;
# the images copy /opt/venv (and the cpu image the project's wheel), so neither reaches an image.

ARG BASE_IMAGE=debian:bookworm-slim

# ---------------------------------------------------------------------------------------------
# build-base: what both build stages start from: python3 with venv, an empty /opt/venv, the build inputs
# and pip's CA settings (a pip.conf that no image sees: the images copy only /opt/venv).
FROM ${BASE_IMAGE} AS build-base

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# The base is a build argument, so Debian package versions are whatever its release carries.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*

COPY docker/local/ /tmp/local/
RUN python3 -m venv /opt/venv \
 && if [ -s /tmp/local/pip-ca.pem ]; then printf '[global]\ncert = /tmp/local/pip-ca.pem\n' > /etc/pip.conf; fi

# ---------------------------------------------------------------------------------------------
# wheel: the project as a wheel, in a stage of its own: a change to the code leaves the dependency layers
# of cpu-build and serve-build as they are. Both images install it without its dependencies.
FROM build-base AS wheel

COPY pyproject.toml README.md /src/
COPY bninception/ /src/bninception/
COPY core/ /src/core/
COPY model/ /src/model/
COPY export/ /src/export/
COPY calibrate/ /src/calibrate/
COPY engines/ /src/engines/
COPY serve/ /src/serve/
COPY evaluate/ /src/evaluate/

RUN /opt/venv/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /dist /src

# ---------------------------------------------------------------------------------------------
# cpu-build: a virtual environment with torch (CPU) and the dependencies of the [serve,cpu] extras.
FROM build-base AS cpu-build

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

# torch (the CPU build, +cpu) comes from a wheel in docker/local/wheels when one is there (its
# dependencies from PyPI), else from the PyTorch CPU index.
RUN if ls /tmp/local/wheels/torch-*.whl > /dev/null 2>&1; then \
        /opt/venv/bin/pip install --no-cache-dir --find-links /tmp/local/wheels "torch==${TORCH_VERSION}+cpu"; \
    else \
        /opt/venv/bin/pip install --no-cache-dir --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}+cpu"; \
    fi

# The dependencies first, read from pyproject.toml, so that a change to the code (or README.md,
# the package's long description) leaves this layer of minutes as it is.
COPY pyproject.toml /src/
COPY docker/requirements.py /tmp/requirements.py
RUN /opt/venv/bin/python /tmp/requirements.py /src/pyproject.toml serve cpu > /tmp/requirements.txt \
 && /opt/venv/bin/pip install --no-cache-dir --requirement /tmp/requirements.txt

# ---------------------------------------------------------------------------------------------
# runtime: what the cpu and serve images share: python3, the user 10001, the entrypoint and healthcheck,
# the environment (ORT_DISABLE_TELEMETRY: ONNX Runtime's own telemetry off; the package sets it too, =0
# opts in). Each image adds its virtual environment.
FROM ${BASE_IMAGE} AS runtime

# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && groupadd --gid 10001 bninception \
 && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin bninception

COPY docker/entrypoint.sh /usr/local/bin/bninception-entrypoint
COPY docker/healthcheck.py /usr/local/bin/bninception-healthcheck

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BNINCEPTION_BUILD_ENGINES=0 \
    ORT_DISABLE_TELEMETRY=1

WORKDIR /
ENTRYPOINT ["bninception-entrypoint"]

# ---------------------------------------------------------------------------------------------
# cpu: the runtime, the dependencies' virtual environment and the project's wheel; nothing from the
# build inputs (docker/local) or the build stage's pip settings.
FROM runtime AS cpu

RUN mkdir -p /runs && chown bninception:bninception /runs

COPY --from=cpu-build /opt/venv /opt/venv
COPY --from=wheel /dist/ /tmp/dist/
COPY docker/check_install.py /tmp/check_install.py

# Exactly one ONNX Runtime build (the [cpu] extra) and every requirement met, or the build fails.
RUN /opt/venv/bin/pip install --no-cache-dir --no-index --no-deps /tmp/dist/bninception-*.whl \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/python /tmp/check_install.py --ort onnxruntime \
 && rm -r /tmp/dist /tmp/check_install.py

# uid/gid 10001 (numeric, so runAsNonRoot policies can check it) must be able to write the runs
# folder mounted at /runs. `runs/demo`, the CLI's default run, is /runs/demo.
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 CMD ["bninception-healthcheck"]
CMD ["--help"]

# ---------------------------------------------------------------------------------------------
# serve-build: the serving dependencies (the [serve] and ONNX Runtime extras, not the package's own
# dependencies, which bring torch) in a virtual environment, with the project's wheel installed.
FROM build-base AS serve-build

ARG ORT_PACKAGE=onnxruntime

COPY pyproject.toml /src/
COPY docker/requirements.py /tmp/requirements.py
RUN /opt/venv/bin/python /tmp/requirements.py --extras-only /src/pyproject.toml serve > /tmp/requirements.txt \
 && echo "${ORT_PACKAGE}" >> /tmp/requirements.txt \
 && /opt/venv/bin/pip install --no-cache-dir --requirement /tmp/requirements.txt

# the project without its dependencies (they bring torch), then pip and setuptools out of the environment
COPY --from=wheel /dist/ /dist/
RUN /opt/venv/bin/pip install --no-cache-dir --no-index --no-deps /dist/bninception-*.whl \
 && /opt/venv/bin/pip uninstall -y -q pip setuptools

# ---------------------------------------------------------------------------------------------
# serve: the runtime and the serving virtual environment with the project (torch and the rest of the
# pipeline stay out; check_install.py proves it, and that the server imports).
FROM runtime AS serve

ARG ORT_PACKAGE=onnxruntime

COPY --from=serve-build /opt/venv /opt/venv
COPY docker/check_install.py /tmp/check_install.py
RUN /opt/venv/bin/python /tmp/check_install.py --ort "${ORT_PACKAGE}" --serving \
 && rm /tmp/check_install.py

USER 10001:10001
EXPOSE 8000 8001
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["bninception-healthcheck"]
CMD ["serve", "--help"]

# ---------------------------------------------------------------------------------------------
# gpu: NGC TensorRT release 25.01 = TensorRT 10.8.0.43, CUDA 12.8, cuDNN 9, Python 3.12.
# onnxruntime-gpu 1.21 is the release built against TensorRT 10.8 (ONNX Runtime's TensorRT EP
# requirements table), the same pins as the [gpu] extra in pyproject.toml (a test checks both).
# TensorRT itself is the image's: the [gpu] extra's pip TensorRT packages are not installed here.
FROM nvcr.io/nvidia/tensorrt:25.01-py3 AS gpu

ARG TENSORRT_VERSION=10.8.0.43
ARG ONNXRUNTIME_GPU_VERSION=1.21.1
ARG TORCH_VERSION=2.7.1
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BNINCEPTION_ENGINE_CACHE=/cache \
    BNINCEPTION_BUILD_ENGINES=1 \
    ORT_DISABLE_TELEMETRY=1

WORKDIR /opt/bninception

# PyTorch built for the image's CUDA 12.8 (training and the reference model of the parity checks).
RUN python3 -m pip install --no-cache-dir --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"

# The dependencies first (see the cpu-build stage), onnxruntime-gpu among them.
COPY pyproject.toml ./
COPY docker/requirements.py docker/check_install.py /tmp/
RUN python3 /tmp/requirements.py pyproject.toml serve > /tmp/requirements.txt \
 && python3 -m pip install --no-cache-dir --requirement /tmp/requirements.txt \
        "onnxruntime-gpu==${ONNXRUNTIME_GPU_VERSION}"

COPY README.md ./
COPY bninception/ bninception/
COPY core/ core/
COPY model/ model/
COPY export/ export/
COPY calibrate/ calibrate/
COPY engines/ engines/
COPY serve/ serve/
COPY evaluate/ evaluate/

# The check fails the build unless onnxruntime-gpu is the only ONNX Runtime, it has the TensorRT
# and CUDA EPs, and the Python TensorRT is the image's own.
RUN python3 -m pip install --no-cache-dir "/opt/bninception[serve]" \
 && python3 /tmp/check_install.py --ort onnxruntime-gpu --provider TensorrtExecutionProvider \
        --provider CUDAExecutionProvider --tensorrt "${TENSORRT_VERSION}" \
 && rm /tmp/requirements.py /tmp/requirements.txt /tmp/check_install.py \
 && groupadd --gid 10001 bninception \
 && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin bninception \
 && mkdir -p /runs /cache \
 && chown bninception:bninception /runs /cache

COPY docker/entrypoint.sh /usr/local/bin/bninception-entrypoint
COPY docker/healthcheck.py /usr/local/bin/bninception-healthcheck

WORKDIR /
USER 10001:10001
VOLUME ["/cache"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 CMD ["bninception-healthcheck"]
ENTRYPOINT ["bninception-entrypoint"]
CMD ["--help"]

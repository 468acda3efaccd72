# Triton's perf_analyzer (its PyPI wheel needs glibc 2.38: Debian trixie) for `make docker-test` and
# `make bench-serve`. Built by docker/harness.py from the local trixie base; ca.crt is the host's pip
# CA bundle (or empty), removed in the same layer.
ARG BASE_IMAGE=bninception-base:trixie
FROM ${BASE_IMAGE}
ARG PERF_ANALYZER=2.60.0
ARG CUDART=12.9.79
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        python3 python3-venv ca-certificates && rm -rf /var/lib/apt/lists/*
COPY ca.crt /tmp/ca.crt
# perf_analyzer dlopens libcudart.so whenever --shared-memory is given, system memory included
RUN python3 -m venv /opt/pa \
    && if [ -s /tmp/ca.crt ]; then export PIP_CERT=/tmp/ca.crt; fi \
    && /opt/pa/bin/pip install -q --no-cache-dir "perf-analyzer==${PERF_ANALYZER}" "nvidia-cuda-runtime-cu12==${CUDART}" \
    && rm /tmp/ca.crt \
    && cudart="$(echo /opt/pa/lib/python3*/site-packages/nvidia/cuda_runtime/lib)" \
    && test -f "$cudart/libcudart.so.12" \
    && ln -s libcudart.so.12 "$cudart/libcudart.so" \
    && ln -s "$cudart" /opt/cudart
ENV PATH=/opt/pa/bin:$PATH LD_LIBRARY_PATH=/opt/cudart

# bninception with TensorRT on a GPU host.
#
# Base: NGC TensorRT release 25.01 = TensorRT 10.8.0.43, CUDA 12.8, cuDNN 9 (a TensorRT 10.x
# image; the code also runs on 11.x, see engines/shim.py). `docker build` has no GPU, so no
# engine is built here: the entrypoint builds them at container start into the /cache volume
# and reuses them by key (TensorRT version + GPU + precision + profile + ONNX sha256).
#
#   docker build -t bninception .
#   docker run --gpus all -v "$PWD/runs:/runs" -v bninception-cache:/cache bninception pipeline --run /runs/demo
#   docker run --gpus all -p 8000:8000 -v "$PWD/runs:/runs" -v bninception-cache:/cache \
#       bninception serve --run /runs/demo --host 0.0.0.0 --port 8000
FROM nvcr.io/nvidia/tensorrt:25.01-py3

ARG TENSORRT_VERSION=10.8.0.43
ARG TORCH_VERSION=2.7.1
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BNINCEPTION_ENGINE_CACHE=/cache

WORKDIR /opt/bninception

# PyTorch built for the image's CUDA 12.8 (the reference model and the GPU parity checks).
RUN python3 -m pip install --no-cache-dir --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"

COPY pyproject.toml README.md ./
COPY bninception/ bninception/
COPY model/ model/
COPY export/ export/
COPY calibrate/ calibrate/
COPY engines/ engines/
COPY serve/ serve/
COPY docker/entrypoint.sh /usr/local/bin/bninception-entrypoint

# The project with the serve and gpu extras. The constraint pins the gpu extra's `tensorrt` to
# the image's own TensorRT, so pip keeps it instead of fetching a second copy; the last command
# fails the build if the Python bindings are not that real TensorRT.
RUN echo "tensorrt==${TENSORRT_VERSION}" > /tmp/constraints.txt \
 && python3 -m pip install --no-cache-dir --constraint /tmp/constraints.txt ".[serve,gpu]" \
 && rm /tmp/constraints.txt \
 && python3 -c "import tensorrt, torch; assert hasattr(tensorrt, 'Builder'); \
assert tensorrt.__version__ == '${TENSORRT_VERSION}', tensorrt.__version__; \
print('tensorrt', tensorrt.__version__, 'torch', torch.__version__, 'cuda', torch.version.cuda)" \
 && chmod 0755 /usr/local/bin/bninception-entrypoint

WORKDIR /
VOLUME ["/cache"]
EXPOSE 8000
ENTRYPOINT ["bninception-entrypoint"]
CMD ["--help"]

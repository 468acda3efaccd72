# bninception: `make demo` sets everything up and runs the main job; `make test` runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUN ?= runs/demo

.PHONY: protos setup demo test docker-test test-avx2 lint gpu-test gpu-check bench-fold bench-precision bench-serve bench-soak bench-grpc-abuse bench-int8-margins reproduce clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU build of torch first, so pip never pulls a several-GB CUDA build
	$(PY) -m pip install -q torch==2.13.0
	# exactly one ONNX Runtime build, the CPU one ([cpu]; [gpu] and [openvino] are the others)
	$(PY) -m pip install -q -e ".[dev,cpu]"
	# type stubs only (TensorRT itself cannot be installed without a GPU host) and the
	# reference BN-Inception file used by the parameter-shape test
	$(PY) -m pip install -q --no-deps tensorrt-stubs==10.13.0.35.1 pretrainedmodels
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/bninception pipeline --run $(RUN)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) tools/lint_imports.py
	$(PY) tools/typecheck.py

test: lint
	$(VENV)/bin/pytest -q
	$(MAKE) test-openvino
	$(MAKE) docker-test

# the Dockerfile's cpu target built and served in a real Docker engine (tests/docker/test_cpu_image.py):
# starts dockerd if none runs, makes the local base image once, checks the container from the host
docker-test: $(STAMP)
	$(VENV)/bin/pytest -q -p no:cacheprovider -m docker tests/docker

# the INT8 tests on an emulated AVX2-only CPU (apt-get install qemu-user; about 35 minutes): ONNX Runtime's
# kernel dispatch sees an AMD EPYC without AVX-512/VNNI; the trained model comes from $(RUN) (make demo)
test-avx2: $(STAMP)
	BNINCEPTION_TEST_TRAINED_RUN=$(RUN) qemu-x86_64 -cpu EPYC-Rome $(PY) -m pytest -q -p no:cacheprovider --timeout 3600 \
		tests/calibrate/test_calibrate_qdq.py tests/calibrate/test_calibrate_stages.py

gpu-test: $(STAMP)
	$(VENV)/bin/pytest -q -m gpu

# one bounded check on a GPU host (under 10 min): demo pipeline, CUDA vs CPU parity, population
# statistics on CUDA, engines fp32/fp16/int8 + TensorRT EP rows where TensorRT exists, validate, bench
gpu-check:
	$(if $(wildcard $(PY)),$(PY),python3) benchmarks/gpu_check.py --out runs/gpu-check

# benchmarks: bounded scripts, ratios measured side by side in one run (never timed unit tests)
bench-fold: $(STAMP)
	$(PY) benchmarks/fold_peers.py

bench-precision: $(STAMP)  # the precision view of the CPU-runtimes benchmark (ONNX Runtime's CPU provider only)
	$(PY) benchmarks/cpu_runtimes.py --precision

bench-serve: $(STAMP)
	$(PY) benchmarks/serve_perf.py

bench-soak: $(STAMP)
	$(PY) benchmarks/soak.py

bench-grpc-abuse: $(STAMP)  # hostile gRPC clients: floods, headers-only and cut-short streams, rapid reset, shm truncation
	$(PY) benchmarks/grpc_abuse.py

bench-int8-margins: $(STAMP)  # both INT8 files over 5 training seeds of each demo recipe, against their gates (~1 h)
	$(PY) benchmarks/int8_margins.py --seeds 5

# ONNX Runtime's OpenVINO provider (the [openvino] extra) in its own environment, since exactly one ONNX
# Runtime build may be installed per environment; native OpenVINO beside it is the anchor of bench-cpu-runtimes
OV_VENV ?= .venv-openvino
OV_STAMP := $(OV_VENV)/.installed
OPENVINO ?= openvino==2026.4.1
.PHONY: setup-openvino test-openvino bench-cpu-runtimes

$(OV_STAMP): pyproject.toml
	test -x $(OV_VENV)/bin/python || python3 -m venv $(OV_VENV)
	$(OV_VENV)/bin/python -m pip install -q --upgrade pip
	$(OV_VENV)/bin/python -m pip install -q torch==2.13.0
	$(OV_VENV)/bin/python -m pip install -q -e ".[dev,openvino]" "$(OPENVINO)"
	touch $(OV_STAMP)

setup-openvino: $(OV_STAMP)

# every gate of a demo-size run on the openvino provider, and serve's auto-pick of it (a few minutes)
test-openvino: $(OV_STAMP)
	$(OV_VENV)/bin/pytest -q -p no:cacheprovider tests/evaluate/test_openvino.py

# PyTorch, ORT CPU EP (.venv), ORT OpenVINO EP and native OpenVINO (.venv-openvino) side by side (a few minutes)
bench-cpu-runtimes: $(STAMP) $(OV_STAMP)
	$(PY) benchmarks/cpu_runtimes.py --openvino-venv $(OV_VENV)

reproduce: $(STAMP)
	$(PY) -m experiments.paper fig1 --out runs/reproduce
	$(PY) -m experiments.paper lr --out runs/reproduce

# regenerate serve/proto/inference_pb2.py from serve/proto/inference.proto (protoc 27.2 from grpcio-tools
# 1.66.2, so the module loads on protobuf 5.27.2 and newer), in a throwaway venv
protos:
	python3 -m venv /tmp/bninception-protoc && /tmp/bninception-protoc/bin/pip install -q grpcio-tools==1.66.2
	cd serve/proto && /tmp/bninception-protoc/bin/python -m grpc_tools.protoc -I. --python_out=. inference.proto

clean:
	rm -rf runs/demo .pytest_cache .mypy_cache .ruff_cache

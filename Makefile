# bninception: `make demo` sets everything up and runs the main job; `make test` runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUN ?= runs/demo

.PHONY: setup demo test lint gpu-test gpu-check bench-fold bench-precision bench-serve reproduce clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU build of torch first, so pip never pulls a several-GB CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	# type stubs only (TensorRT itself cannot be installed without a GPU host) and the
	# reference BN-Inception file used by the parameter-shape test
	$(PY) -m pip install -q --no-deps tensorrt-stubs==10.13.0.35.1 pretrainedmodels
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/bninception pipeline --run $(RUN)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m bninception.engines.typecheck

test: lint
	$(VENV)/bin/pytest -q

gpu-test: $(STAMP)
	$(VENV)/bin/pytest -q -m gpu

# one bounded check on a GPU host (under 10 min): demo pipeline, CUDA vs CPU parity, population
# statistics on CUDA, engines fp32/fp16/int8 + TensorRT EP rows where TensorRT exists, validate, bench
gpu-check:
	$(if $(wildcard $(PY)),$(PY),python3) benchmarks/gpu_check.py --out runs/gpu-check

# benchmarks: bounded scripts, ratios measured side by side in one run (never timed unit tests)
bench-fold: $(STAMP)
	$(PY) benchmarks/fold_peers.py

bench-precision: $(STAMP)
	$(PY) benchmarks/precision_cpu.py

bench-serve: $(STAMP)
	$(PY) benchmarks/serve_load.py

reproduce: $(STAMP)
	$(VENV)/bin/bninception reproduce fig1 --out runs/reproduce
	$(VENV)/bin/bninception reproduce lr --out runs/reproduce

clean:
	rm -rf runs/demo .pytest_cache .mypy_cache .ruff_cache

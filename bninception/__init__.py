"""bninception: BN-Inception from PyTorch training to ONNX, FP16/INT8 and TensorRT, with parity gates."""

import os
from importlib.metadata import PackageNotFoundError, version

# ONNX Runtime 1.29 and later send telemetry on Linux by default and keep a device id under ~/.cache
# (Microsoft/DeveloperTools/.onnxruntime). Off before any module here imports onnxruntime; the variable is
# the one its 1.32 build reads (its binary names ORT_DISABLE_TELEMETRY). Opt in with ORT_DISABLE_TELEMETRY=0.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

try:
    __version__ = version("bninception")  # pyproject.toml is the one place the version is written
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"


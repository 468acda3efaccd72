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


def _from_checkout() -> None:
    """Not installed (a plain checkout on PYTHONPATH): the stage folders beside this one
    (core/, model/, export/, ...) are ``bninception.core``, ``bninception.model``, ... as when installed."""
    import importlib.util
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if importlib.util.find_spec(f"{__name__}.core") is None and os.path.isfile(os.path.join(root, "core",
                                                                                              "__init__.py")):
        __path__.append(root)


_from_checkout()

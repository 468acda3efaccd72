"""bninception: BN-Inception from PyTorch training to ONNX, FP16/INT8 and TensorRT, with parity gates.

The import stays light: stages (``bninception.model``, ``.export``, ``.calibrate``, ``.engines``,
``.serve``) and heavy dependencies load only when used.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bninception")  # pyproject.toml is the one place the version is written
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

"""TensorRT engines: build, key + sidecar, load and run, the 10.x / 11.x shim, the EPContext wrapper.

Import-light: ``tensorrt``, ``torch`` and ``onnx`` are imported inside the functions that need them.
"""

from __future__ import annotations

from bninception.engines.detect import available, probe_host
from bninception.engines.store import classify_engines, list_engines

__all__ = ["available", "classify_engines", "list_engines", "probe_host"]

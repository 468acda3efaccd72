"""TensorRT engines: build, key + sidecar, load and run, and the TensorRT 10.x / 11.x shim.

Importing this package stays light: nothing here imports ``tensorrt`` or ``torch`` at module
import. The heavy work lives in :mod:`bninception.engines.stages` (build) and
:mod:`bninception.engines.runner` (run), which import them lazily.
"""

from __future__ import annotations

from bninception.engines.detect import available
from bninception.engines.store import EngineRecord, list_engines

PRECISIONS = ("fp32", "fp16", "int8")

__all__ = ["PRECISIONS", "EngineRecord", "available", "list_engines"]

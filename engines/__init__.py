"""TensorRT engines: build, key + sidecar, load and run, the TensorRT 10.x / 11.x shim, and the EPContext wrapper.

Importing this package stays light: nothing here imports ``tensorrt``, ``torch`` or ``onnx`` at
module import. The heavy work lives in :mod:`bninception.engines.stages` (build) and
:mod:`bninception.engines.runner` (run), which import them lazily. Which engines of a run may run
on this host: :func:`classify_engines` (usable / stale / foreign / broken), with :func:`probe_host`.
"""

from __future__ import annotations

from bninception.engines.detect import available, probe_host
from bninception.engines.store import EngineRecord, EngineStatus, classify_engines, list_engines, usable_engines

__all__ = ["EngineRecord", "EngineStatus", "available", "classify_engines", "list_engines",
           "probe_host", "usable_engines"]

"""TensorRT engines: build, key + sidecar, load and run, the 10.x / 11.x shim, the EPContext wrapper.

Import-light: ``tensorrt``, ``torch`` and ``onnx`` are imported inside the functions that need them.
"""

from bninception.core.exports import public_surface

# what other layers may use (tests/bninception/test_public_surface.py keeps this list and the imports in step)
__all__, __getattr__ = public_surface(__name__, {
    "BatchProfile": "profile",
    "BuildOptions": "key",
    "ContextModelRunner": "epcontext",
    "HARDWARE_COMPATIBILITY": "shim",
    "TensorRTRunner": "runner",
    "available": "detect",
    "build_engine_stage": "stages",
    "check_provider": "epcontext",
    "classify_engines": "store",
    "list_engines": "store",
    "load_tensorrt": "detect",
    "probe_host": "detect",
    "select_engine": "store",
})

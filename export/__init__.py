"""ONNX export of the inference-form network and graph-level passes (BatchNorm folding)."""

from bninception.core.exports import public_surface

# what other layers may use (tests/bninception/test_public_surface.py keeps this list and the imports in step)
__all__, __getattr__ = public_surface(__name__, {
    "DEFAULT_DOMAINS": "graph",
    "MAX_ONNX_BYTES": "onnx_io",
    "check_full": "onnx_io",
    "default_opset": "graph",
    "export_stage": "stages",
    "fold_file": "fold_file",
    "fold_stage": "stages",
    "get_attr": "graph",
    "load_onnx": "onnx_io",
    "parse_onnx": "onnx_io",
    "tensor_types": "graph",
})

"""FP16 and calibrated INT8 (explicit Q/DQ) variants of the folded ONNX model."""

from bninception.core.exports import public_surface

# what other layers may use (tests/bninception/test_public_surface.py keeps this list and the imports in step)
__all__, __getattr__ = public_surface(__name__, {
    "DEFAULT_METHOD": "stages",
    "DEFAULT_PERCENTILE": "stages",
    "DEFAULT_SAMPLES": "stages",
    "METHODS": "stages",
    "adopt_int8_stage": "stages",
    "fp16_stage": "stages",
    "int8_stage": "stages",
})

"""The ONNX Runtime CPU deployment variant of INT8 (``model.int8.cpu.onnx``), from the same calibration.

Why a second INT8 file: ONNX Runtime's CPU provider runs integer kernels only for the Q/DQ
groups it can fuse (``DQ -> Conv -> Q`` into ``QLinearConv`` and so on, at the ALL optimization
level). The TensorRT layout of ``model.int8.onnx`` has no Q after a Conv (TensorRT's rule), and
with symmetric int8 activations a Relu cannot be folded into the next Q, so ORT runs every layer
as ``DequantizeLinear`` + FP32 Conv: correct (it is how the accuracy gate is measured) but slower
than FP32. This variant is made by ONNX Runtime's own ``QDQQuantizer`` with our ranges: U8
activations (Relu removed: a ``[0, amax]`` range gives zero point 0), S8 per-channel symmetric
weights, every activation quantized, so the whole network fuses into QLinear* kernels that use
AVX512-VNNI (``vpdpbusd`` multiplies u8 x s8; S8S8 graphs fuse only partly on x86). No
``reduce_range``: that is for CPUs without VNNI, where u8s8 products can saturate.

Ranges: the observed max of the same calibration pass, whatever ``--method`` chose for the
TensorRT model. With U8 activations a post-ReLU tensor gets 255 levels instead of 127, so
clipping buys half as much resolution; measured on the demo run (359 test images, 512
calibration images) the U8 model's logit RMS error relative to FP32 was 1.8% with max ranges and
2.5% with percentile-99.99 ranges (2.6% -> 3.0% at 256 images, 1.7% -> 2.5% at 1024).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from bninception.core.errors import BninceptionError

if TYPE_CHECKING:
    import onnx

CPU_OP_TYPES = ["Conv", "Gemm", "MatMul", "Relu", "Clip", "MaxPool", "AveragePool", "GlobalAveragePool",
                "Concat", "Add", "Mul", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze"]


def ort_cpu_int8(model: onnx.ModelProto, amax: dict[str, float], minimum: dict[str, float]
                 ) -> onnx.ModelProto:
    """U8S8 QDQ model for ORT CPU; a tensor's range is ``[0, amax]`` if it was never negative
    (``minimum``: observed minima), else ``[-amax, amax]``."""
    import logging

    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import save_and_reload_model_with_shape_infer

    ranges = {}
    for name, top in amax.items():
        low = 0.0 if minimum.get(name, -1.0) >= 0 else -top
        ranges[name] = TensorData(lowest=np.float32(low), highest=np.float32(top))
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)  # the quantizer logs "consider pre-processing" warnings
    try:
        prepared = save_and_reload_model_with_shape_infer(model)
        quantizer = QDQQuantizer(
            prepared, True, False, QuantType.QInt8, QuantType.QUInt8,
            TensorsData(CalibrationMethod.MinMax, ranges), [], [], CPU_OP_TYPES,
            {"ActivationSymmetric": False, "WeightSymmetric": True},
        )
        quantizer.quantize_model()
        quantizer.model.topological_sort()
    except Exception as exc:  # the quantizer raises assorted types
        raise BninceptionError(f"ONNX Runtime CPU INT8 variant: quantization failed: {exc}") from exc
    finally:
        logger.setLevel(level)
    return quantizer.model.model

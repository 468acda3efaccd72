"""FP16 and calibrated INT8 (explicit Q/DQ) variants of the folded ONNX model.

Modules: ``graph`` (weighted ops, Q/DQ opset range), ``fp16`` (FP16 conversion), ``data``
(calibration reader), ``ranges`` (minmax / percentile / entropy amax), ``qdq`` (ONNX Runtime's Q/DQ
writer in the TensorRT and CPU layouts, and the TensorRT layout check), ``cache``
(calibration.json), ``evaluate`` (evaluation images, logits of several models), ``stages`` (the
run-directory stages ``fp16_stage`` and ``int8_stage``).
"""

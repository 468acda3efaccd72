"""FP16 and calibrated INT8 (explicit Q/DQ) variants of the folded ONNX model.

Modules: ``graph`` (small ONNX helpers), ``fp16`` (FP16 conversion), ``data`` (calibration
reader), ``ranges`` (minmax / percentile / entropy amax), ``qdq`` (Q/DQ insertion in the layout
TensorRT accepts), ``cache`` (calibration.json), ``evaluate`` (agreement / accuracy vs FP32),
``stages`` (the run-directory stages ``fp16_stage`` and ``int8_stage``).
"""

"""FP16 and calibrated INT8 (explicit Q/DQ) variants of the folded ONNX model."""

"""ONNX export of the inference-form network and graph-level passes (BatchNorm folding)."""

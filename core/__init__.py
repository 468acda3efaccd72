"""What every stage shares, defined once: errors, atomic files, the run directory and its layout,
ONNX metadata, the parity gates, the ONNX Runtime session factory, the Runner protocol and the
stage skeleton.

The bottom layer: it imports no stage and nothing from the root package, so every stage, ``serve``
and the root (CLI, validate, bench, pipeline) can import it without cycles. Import-light: torch,
onnx and onnxruntime are imported inside the functions that need them.
"""

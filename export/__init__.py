"""ONNX export of the inference-form network and graph-level passes (BatchNorm folding).

Modules: ``to_onnx`` (torch -> ONNX, BN kept), ``fold`` (the BN folding pass), ``onnx_io``
(safe load / checked atomic save), ``parity`` (ORT-vs-reference checks), ``stages`` (run-dir stages).
Kept import-light: nothing heavy is imported here.
"""

"""ONNX export of the inference-form network and graph-level passes (BatchNorm folding).

Modules: ``to_onnx`` (torch -> ONNX, BN kept), ``fold`` (the BN folding pass, a pure
``ModelProto -> (ModelProto, FoldReport)`` function), ``graph`` (editable graph view for passes),
``onnx_io`` (safe load / checked atomic save), ``parity`` (ORT-vs-reference checks), ``stages``
(the run-dir export and fold stages), ``fold_file`` (``bninception fold IN.onnx``), ``synthetic``
(networks with random BN state for tests and benchmarks). Import-light: nothing heavy here.
"""

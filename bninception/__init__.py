"""bninception: BN-Inception from PyTorch training to ONNX, FP16/INT8 and TensorRT, with parity gates.

The import stays light: stages (``bninception.model``, ``.export``, ``.calibrate``, ``.engines``,
``.serve``) and heavy dependencies load only when used.
"""

__version__ = "0.1.0"

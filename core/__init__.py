"""What every stage shares, defined once; the bottom layer, importing no stage (torch, onnx, onnxruntime lazily)."""

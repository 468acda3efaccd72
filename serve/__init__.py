"""ONNX Runtime serving: KServe V2 over HTTP and gRPC, dynamic batcher, limits, Triton repository export."""

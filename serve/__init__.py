"""ONNX Runtime serving: KServe V2 over HTTP (and gRPC), dynamic batcher, limits, Triton repository export.

Needs only model files and onnxruntime (fastapi/uvicorn for HTTP, grpcio for gRPC, imported lazily).
"""

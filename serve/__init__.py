"""ONNX Runtime serving: sessions, dynamic batcher, KServe V2 protocol app, Triton repository export.

Needs only model files and onnxruntime (fastapi/uvicorn for the HTTP server, imported lazily).
"""

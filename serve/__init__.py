"""ONNX Runtime serving: KServe V2 over HTTP and gRPC, dynamic batcher, limits, Triton repository export."""

from bninception.core.exports import public_surface

# what other layers may use (tests/bninception/test_public_surface.py keeps this list and the imports in step)
__all__, __getattr__ = public_surface(__name__, {
    "ModelInfo": "model_info",
    "NAME": "config",
    "ServeConfig": "config",
    "create_app": "app",
    "free_port": "server",
    "model_config": "triton",
    "read_model_info": "model_info",
    "serve_forever": "server",
    "to_pbtxt": "triton",
})

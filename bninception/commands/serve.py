"""``bninception serve``: ONNX Runtime HTTP server (KServe V2 protocol) with dynamic batching."""

from __future__ import annotations

import argparse
from dataclasses import replace

from bninception.cli import add_run_argument
from bninception.core.settings import add_options, options_of
from bninception.serve.config import ServeConfig

NAME = "serve"
HELP = "serve a run's ONNX model over HTTP (KServe V2 / Open Inference Protocol, dynamic batching)"
ORDER = 70


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """What to serve (a run's file of a precision, or any ONNX file), where, and every ServeConfig setting."""
    add_run_argument(parser)
    parser.add_argument("--model", default=None, help="serve this ONNX file instead of the run's model")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32",
                        help="fp32: model.folded.onnx, fp16: model.fp16.onnx, int8: the INT8 file fastest on the "
                             "provider (model.int8.cpu.onnx on cpu and openvino, model.int8.onnx on cuda and "
                             "tensorrt)")
    parser.add_argument("--providers", default=None,
                        help="comma-separated execution providers: cpu, openvino, cuda, tensorrt (default: the "
                             "fastest one this ONNX Runtime build has)")
    parser.add_argument("--engine", action=argparse.BooleanOptionalAction, default=None,
                        help="serve the run's TensorRT plan of --precision through ONNX Runtime's TensorRT provider "
                             "(default: when the provider and a usable engine are here; --no-engine: never)")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="listen port (default: %(default)s)")
    parser.add_argument("--grpc-port", type=int, default=None,
                        help="also serve the KServe V2 gRPC API on this port (default: HTTP only)")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    add_options(parser, ServeConfig)


def run(args: argparse.Namespace) -> int:
    import sys

    from bninception.core.errors import BninceptionError
    from bninception.served import served_model

    requested = [p for p in (args.providers or "").split(",") if p.strip()]
    served = served_model(args.run, args.precision, requested, args.engine, args.model)
    path = served.path
    try:
        import granian  # noqa: F401
        import starlette  # noqa: F401
    except ImportError as exc:
        raise BninceptionError(f"serving needs the serve extra: pip install 'bninception[serve]' ({exc})") from exc
    from bninception.serve.app import create_app
    from bninception.serve.server import free_port, serve_forever

    config = ServeConfig(**options_of(args, ServeConfig))
    config = replace(config, providers=served.providers,  # an engine's profile bounds the batch
                     max_batch=min(config.max_batch, served.max_batch or config.max_batch))
    if args.grpc_port is not None:
        free_port(args.host, args.grpc_port)  # a bad or busy port fails before the model loads
    free_port(args.host, args.port)
    app = create_app(path, config)
    state = app.state.server
    grpc = f" and gRPC on {args.host}:{args.grpc_port}" if args.grpc_port is not None else ""
    batching = (f"max batch {config.max_batch}, max delay {config.max_delay_ms:g} ms" if config.batching
                else "no batching")
    unchecked = " (a file given with --model: not checked against a run's manifest)" if args.model else ""
    print(f"serving {path}{unchecked} as {config.model_name!r} on http://{args.host}:{args.port}{grpc} "
          f"(providers {', '.join(state.runner.providers)}, {batching}, intra-op threads "
          f"{state.threads.describe()})", file=sys.stderr)
    serve_forever(app, host=args.host, port=args.port, access_log=args.access_log, grpc_port=args.grpc_port)
    return 0

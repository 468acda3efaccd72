"""``bninception serve``: ONNX Runtime HTTP server (KServe V2 protocol) with dynamic batching."""

from __future__ import annotations

import argparse

from bninception.cli import add_run_argument

NAME = "serve"
HELP = "serve a run's ONNX model over HTTP (KServe V2 / Open Inference Protocol, dynamic batching)"
ORDER = 70


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from bninception.serve.config import ServeConfig as C

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
    parser.add_argument("--name", default=C.model_name, help="model name in the URL (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="listen port (default: %(default)s)")
    parser.add_argument("--max-batch", type=int, default=C.max_batch,
                        help="rows per merged batch (default: %(default)s)")
    parser.add_argument("--max-delay-ms", type=float, default=C.max_delay_ms,
                        help="how long the oldest request may wait for a fuller batch; 0: a free model takes "
                             "what is queued at once (default: %(default)s)")
    parser.add_argument("--max-queue", type=int, default=C.max_queue,
                        help="requests waiting before 503 (default: %(default)s)")
    parser.add_argument("--no-batching", action="store_true", help="run every request on its own")
    parser.add_argument("--timeout-s", type=float, default=C.request_timeout_s,
                        help="per-request timeout (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=C.threads, help="ONNX Runtime intra-op threads (0: auto)")
    parser.add_argument("--optimization", choices=("disable", "basic", "extended", "all"), default=C.optimization,
                        help="ONNX Runtime graph optimization level (default: %(default)s)")
    parser.add_argument("--spin", action="store_true",
                        help="let idle ONNX Runtime threads busy-wait (off by default: the event loop shares "
                             "the cores)")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument("--grpc-port", type=int, default=None,
                        help="also serve the KServe V2 gRPC API on this port (default: HTTP only)")
    parser.add_argument("--read-timeout-s", type=float, default=C.read_timeout_s,
                        help="a request must arrive whole within this, else 408 (default: %(default)s)")
    parser.add_argument("--keep-alive-s", type=float, default=C.keep_alive_s,
                        help="close a connection idle this long (default: %(default)s)")
    parser.add_argument("--graceful-shutdown-s", type=float, default=C.graceful_shutdown_s,
                        help="on SIGTERM, running requests get this long (default: %(default)s)")
    parser.add_argument("--max-connections", type=int, default=C.max_connections,
                        help="open connections before 503 (default: %(default)s)")
    parser.add_argument("--decode-memory-mb", type=int, default=C.decode_memory_mb,
                        help="memory for all image decodes at once (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    import sys

    from bninception.core.errors import BninceptionError
    from bninception.serve.config import ServeConfig
    from bninception.served import served_model

    requested = [p for p in (args.providers or "").split(",") if p.strip()]
    served = served_model(args.run, args.precision, requested, args.engine, args.model)
    path = served.path
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise BninceptionError(f"serving needs the serve extra: pip install 'bninception[serve]' ({exc})") from exc
    from bninception.serve.app import create_app
    from bninception.serve.server import bind_socket, serve_forever

    max_batch = min(args.max_batch, served.max_batch or args.max_batch)  # an engine's profile bounds it
    config = ServeConfig(model_name=args.name, providers=served.providers, optimization=args.optimization,
                         threads=args.threads, spinning=args.spin, batching=not args.no_batching,
                         max_batch=max_batch, max_delay_ms=args.max_delay_ms, max_queue=args.max_queue,
                         request_timeout_s=args.timeout_s, read_timeout_s=args.read_timeout_s,
                         keep_alive_s=args.keep_alive_s, graceful_shutdown_s=args.graceful_shutdown_s,
                         max_connections=args.max_connections, decode_memory_mb=args.decode_memory_mb)
    if args.grpc_port is not None:
        bind_socket(args.host, args.grpc_port).close()  # a bad or busy port fails before the model loads
    sock = bind_socket(args.host, args.port)
    try:
        app = create_app(path, config)
    except BaseException:
        sock.close()
        raise
    state = app.state.server
    grpc = f" and gRPC on {args.host}:{args.grpc_port}" if args.grpc_port is not None else ""
    batching = (f"max batch {max_batch}, max delay {args.max_delay_ms:g} ms" if config.batching
                else "no batching")
    print(f"serving {path} as {args.name!r} on http://{args.host}:{args.port}{grpc} "
          f"(providers {', '.join(state.runner.providers)}, {batching})", file=sys.stderr)
    serve_forever(app, host=args.host, access_log=args.access_log, sock=sock, grpc_port=args.grpc_port)
    return 0

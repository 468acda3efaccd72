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
                             "provider (model.int8.cpu.onnx on cpu, model.int8.onnx elsewhere)")
    parser.add_argument("--providers", default=None,
                        help="comma-separated execution providers: cpu, openvino, cuda (default: the fastest "
                             "one this ONNX Runtime build has)")
    parser.add_argument("--name", default=C.model_name, help="model name in the URL (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="listen port (default: %(default)s)")
    parser.add_argument("--max-batch", type=int, default=C.max_batch,
                        help="rows per merged batch (default: %(default)s)")
    parser.add_argument("--max-delay-ms", type=float, default=C.max_delay_ms,
                        help="longest wait to fill a batch (default: %(default)s)")
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


def pick_provider(requested: str | None) -> tuple[str, ...]:
    """The providers to serve on: the ones asked for, else the fastest that runs ONNX files here."""
    from bninception.core.ort import available, provider_name, user_name

    if requested:
        return tuple(user_name(provider_name(p)) for p in requested.split(",") if p.strip())
    return (next(p for p in available() if p != "tensorrt"),)


def run(args: argparse.Namespace) -> int:
    import sys

    from bninception.core.errors import BninceptionError
    from bninception.serve.config import ServeConfig
    from bninception.serve.model_info import model_path_for

    providers = pick_provider(args.providers)
    path = args.model or model_path_for(args.run, args.precision, providers[0])
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise BninceptionError(f"serving needs the serve extra: pip install 'bninception[serve]' ({exc})") from exc
    from bninception.serve.app import create_app
    from bninception.serve.server import serve_forever

    config = ServeConfig(model_name=args.name, providers=providers, optimization=args.optimization,
                         threads=args.threads, spinning=args.spin, batching=not args.no_batching,
                         max_batch=args.max_batch, max_delay_ms=args.max_delay_ms, max_queue=args.max_queue,
                         request_timeout_s=args.timeout_s)
    app = create_app(path, config)
    state = app.state.server
    print(f"serving {path} as {args.name!r} on http://{args.host}:{args.port} "
          f"(providers {', '.join(state.runner.providers)}, max batch {args.max_batch}, "
          f"max delay {args.max_delay_ms:g} ms)", file=sys.stderr)
    serve_forever(app, host=args.host, port=args.port, access_log=args.access_log)
    return 0

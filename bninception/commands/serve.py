"""``bninception serve``: ONNX Runtime HTTP server (KServe V2 protocol) with dynamic batching."""

from __future__ import annotations

import argparse

from bninception.cli import add_run_argument

NAME = "serve"
HELP = "serve a run's ONNX model over HTTP (KServe V2 / Open Inference Protocol, dynamic batching)"
ORDER = 70


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_argument(parser)
    parser.add_argument("--model", default=None, help="serve this ONNX file instead of the run's model")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32",
                        help="fp32: model.folded.onnx, fp16: model.fp16.onnx, int8: model.int8.onnx "
                             "(model.int8.cpu.onnx when serving on CPU only)")
    parser.add_argument("--name", default="bninception", help="model name in the URL (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="listen port (default: %(default)s)")
    parser.add_argument("--max-batch", type=int, default=32, help="rows per merged batch (default: 32)")
    parser.add_argument("--max-delay-ms", type=float, default=5.0,
                        help="longest wait to fill a batch (default: 5)")
    parser.add_argument("--max-queue", type=int, default=256,
                        help="requests waiting before 503 (default: 256)")
    parser.add_argument("--no-batching", action="store_true", help="run every request on its own")
    parser.add_argument("--timeout-s", type=float, default=30.0, help="per-request timeout (default: 30)")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: auto)")
    parser.add_argument("--providers", default=None,
                        help="comma-separated ONNX Runtime providers (default: TensorRT, CUDA, CPU "
                             "as available)")
    parser.add_argument("--optimization", choices=("disable", "basic", "extended", "all"), default="all",
                        help="ONNX Runtime graph optimization level (default: all)")
    parser.add_argument("--spin", action="store_true",
                        help="let idle ONNX Runtime threads busy-wait (off by default: the event loop "
                             "shares the cores)")
    parser.add_argument("--access-log", action="store_true", help="log every request")


def run(args: argparse.Namespace) -> int:
    import sys

    from bninception.serve.model_info import model_path_for
    from bninception.serve.session import pick_providers

    providers = [p.strip() for p in args.providers.split(",") if p.strip()] if args.providers else None
    cpu_only = pick_providers(providers) == ["CPUExecutionProvider"]
    path = args.model or model_path_for(args.run, args.precision, cpu_only=cpu_only)
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        from bninception.core.errors import BninceptionError

        raise BninceptionError(f"serving needs the serve extra: pip install 'bninception[serve]' ({exc})"
                               ) from exc
    from bninception.serve.app import create_app
    from bninception.serve.server import serve_forever

    app = create_app(path, model_name=args.name, max_batch=args.max_batch, max_delay_ms=args.max_delay_ms,
                     max_queue=args.max_queue, threads=args.threads, providers=providers,
                     optimization=args.optimization, batching=not args.no_batching,
                     request_timeout_s=args.timeout_s, spinning=args.spin)
    state = app.state.server
    print(f"serving {path} as {args.name!r} on http://{args.host}:{args.port} "
          f"(providers {state.session.get_providers()}, max batch {args.max_batch}, "
          f"max delay {args.max_delay_ms:g} ms)", file=sys.stderr)
    serve_forever(app, host=args.host, port=args.port, access_log=args.access_log)
    return 0

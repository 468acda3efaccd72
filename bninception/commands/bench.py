"""bninception bench: latency and throughput of every backend at several batch sizes."""

from __future__ import annotations

import argparse

NAME = "bench"
HELP = "benchmark PyTorch, ONNX Runtime (FP32/folded/FP16/INT8) and TensorRT engines per batch size"
ORDER = 65


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from bninception.cli import add_run_argument
    from bninception.evaluate.bench import BenchSettings

    add_run_argument(parser)
    parser.add_argument("--batch-sizes", default=",".join(map(str, BenchSettings.batch_sizes)),
                        help="comma-separated (default: %(default)s)")
    parser.add_argument("--min-seconds", type=float, default=BenchSettings.min_seconds,
                        help="measure each cell at least this long (default: %(default)s)")
    parser.add_argument("--max-seconds", type=float, default=BenchSettings.max_seconds,
                        help="stop a slow cell after this long, with at least 3 calls (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: default)")
    parser.add_argument("--providers", default=None,
                        help="comma-separated execution providers to time: cpu, openvino, cuda, tensorrt (TensorRT: "
                             "the run's engines; default: every one this ONNX Runtime build has)")
    parser.add_argument("--no-engines", action="store_true", help="leave TensorRT engines out")
    parser.add_argument("--served-only", action="store_true",
                        help="skip the FP32 ONNX rows with graph optimizations off")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from bninception.commands.validate import providers_and_engines
    from bninception.core.layout import BENCH_JSON
    from bninception.core.rundir import RunDir
    from bninception.evaluate.bench import bench_stage, parse_batch_sizes

    providers, engines = providers_and_engines(args.providers, args.no_engines)
    run_dir = RunDir(args.run, create=False)
    report = bench_stage(run_dir, parse_batch_sizes(args.batch_sizes), force=True, include_engines=engines,
                         min_seconds=args.min_seconds, max_seconds=args.max_seconds,
                         include_unoptimized=not args.served_only, threads=args.threads, providers=providers).value
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.table())
        print(f"wrote {run_dir.path(BENCH_JSON)} ({report.seconds:.1f} s)", file=sys.stderr)
    return 0

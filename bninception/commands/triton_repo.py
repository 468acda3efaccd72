"""``bninception triton-repo``: a Triton Inference Server model repository from a run."""

from __future__ import annotations

import argparse

from bninception.cli import add_run_argument

NAME = "triton-repo"
HELP = "write a Triton Inference Server model repository (ONNX Runtime model, TensorRT plan if built)"
ORDER = 75


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_argument(parser)
    parser.add_argument("-o", "--output", required=True, help="repository folder to write")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32",
                        help="which model of the run (default: fp32 = model.folded.onnx)")
    parser.add_argument("--name", default="bninception", help="model name prefix (default: %(default)s)")
    parser.add_argument("--max-batch", type=int, default=32, help="max_batch_size (default: 32)")
    parser.add_argument("--max-delay-us", type=int, default=0,
                        help="dynamic_batching max_queue_delay_microseconds (default: 0, as Triton and serve)")
    parser.add_argument("--instances", type=int, default=1, help="instance_group count (default: 1)")
    parser.add_argument("--json", action="store_true", help="print what was written as JSON")


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from bninception.triton_repo import write_repository

    report = write_repository(args.run, args.output, precision=args.precision, name=args.name,
                              max_batch=args.max_batch, max_delay_us=args.max_delay_us,
                              instances=args.instances)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for model in report["models"]:
            print(f"wrote {model['path']} ({model['artifact']}, max_batch_size {model['max_batch_size']})")
        print(f"tensorrt: {report['tensorrt']}", file=sys.stderr)
    return 0

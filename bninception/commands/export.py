"""``bninception export``: model.pt -> model.onnx (BatchNormalization kept), parity-checked."""

from __future__ import annotations

import argparse

NAME = "export"
HELP = "export model.pt to ONNX (BatchNormalization kept, dynamic batch), checked against PyTorch"
ORDER = 30


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from bninception.cli import add_run_argument

    add_run_argument(parser)
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset, 13..21 (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="redo the stage even if it is up to date")
    parser.add_argument("--json", action="store_true", help="print one JSON summary on stdout")


def run(args: argparse.Namespace) -> int:
    import json

    from bninception.core.rundir import RunDir
    from bninception.export.stages import export_stage

    summary = export_stage(RunDir(args.run, create=False), opset=args.opset, force=args.force)
    if args.json:
        print(json.dumps(summary.to_dict()))
    return 0

"""``bninception fold``: fold BatchNormalization into neighbouring layers at ONNX graph level."""

from __future__ import annotations

import argparse

NAME = "fold"
HELP = "fold BatchNormalization nodes of an ONNX model (IN.onnx [-o OUT.onnx] | --run RUN)"
ORDER = 35


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", nargs="?", help="any ONNX model (single file)")
    parser.add_argument("-o", "--output", help="output path (default: IN with .folded.onnx)")
    parser.add_argument("--run", help="fold RUN/model.onnx into RUN/model.folded.onnx (a pipeline stage)")
    parser.add_argument("--force", action="store_true", help="with --run: redo even if up to date")
    parser.add_argument("--no-check", action="store_true",
                        help="skip the ONNX Runtime parity check on random inputs (file mode)")
    parser.add_argument("--json", action="store_true", help="print the fold report as JSON on stdout")


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from bninception.core.errors import BninceptionError

    if bool(args.input) == bool(args.run):
        raise BninceptionError("give either IN.onnx or --run RUN (one of them)")
    if args.run:
        if args.output:
            raise BninceptionError("-o is not used with --run (the output is RUN/model.folded.onnx)")
        from bninception.core.rundir import RunDir
        from bninception.export.stages import fold_stage

        summary = fold_stage(RunDir(args.run, create=False), force=args.force)
        if args.json:
            print(json.dumps(summary.to_dict()))
        return 0
    from bninception.export.fold_file import fold_file

    payload = fold_file(args.input, args.output, check=not args.no_check)
    if args.json:
        print(json.dumps(payload))
    else:
        print(payload["summary"], file=sys.stderr)
    return 0

"""``bninception calibrate``: FP16 or calibrated INT8 (explicit Q/DQ) from model.folded.onnx."""

from __future__ import annotations

import argparse

NAME = "calibrate"
HELP = "make model.fp16.onnx, or model.int8.onnx + calibration.json (explicit Q/DQ), gated on accuracy"
ORDER = 40


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from bninception.calibrate.stages import DEFAULT_METHOD, DEFAULT_PERCENTILE, DEFAULT_SAMPLES, METHODS
    from bninception.cli import add_run_argument

    add_run_argument(parser)
    parser.add_argument("--precision", choices=("fp16", "int8"), required=True)
    parser.add_argument("--method", choices=METHODS, default=None,
                        help=f"INT8 range method (default: {DEFAULT_METHOD}, or the cached one with --from-cache)")
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                        help="INT8 calibration images (default: %(default)s)")
    parser.add_argument("--percentile", type=float, default=DEFAULT_PERCENTILE,
                        help="percentile of |x| for --method percentile (default: %(default)s)")
    parser.add_argument("--from-cache", action="store_true",
                        help="INT8: reuse RUN/calibration.json (refused if the model changed)")
    parser.add_argument("--from", dest="source", metavar="FILE.onnx",
                        help="INT8: adopt a model quantized elsewhere (ModelOpt, a QAT export) as model.int8.onnx")
    parser.add_argument("--keep-fp32", default=None, metavar="OPS",
                        help="FP16: comma-separated op types to keep in FP32 (default: none)")
    parser.add_argument("--force", action="store_true", help="redo even if up to date")
    parser.add_argument("--json", action="store_true", help="print the stage summary as JSON on stdout")


def run(args: argparse.Namespace) -> int:
    import json

    from bninception.calibrate.stages import adopt_int8_stage, fp16_stage, int8_stage
    from bninception.core.errors import BninceptionError
    from bninception.core.rundir import RunDir

    run_dir = RunDir(args.run, create=False)
    if args.precision == "fp16":
        if args.method or args.from_cache or args.source:
            raise BninceptionError("--method, --from-cache and --from apply to --precision int8 only")
        keep = None if args.keep_fp32 is None else [op for op in args.keep_fp32.split(",") if op]
        summary = fp16_stage(run_dir, keep_fp32_ops=keep, force=args.force)
    else:
        if args.keep_fp32 is not None:
            raise BninceptionError("--keep-fp32 applies to --precision fp16 only")
        if args.source is not None:
            if args.method or args.from_cache:
                raise BninceptionError("--from adopts a quantized model: --method and --from-cache do not apply")
            summary = adopt_int8_stage(run_dir, args.source, force=args.force)
        else:
            summary = int8_stage(run_dir, method=args.method, samples=args.samples, percentile=args.percentile,
                                 from_cache=args.from_cache, force=args.force)
    if args.json:
        print(json.dumps(summary.to_dict()))
    return 0

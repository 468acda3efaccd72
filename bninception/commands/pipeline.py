"""bninception pipeline: the main job, every stage, re-using what is up to date."""

from __future__ import annotations

import argparse

NAME = "pipeline"
HELP = ("train, population statistics, export, fold, FP16, INT8, engines (GPU hosts), validate, "
        "bench, report")
ORDER = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from bninception.calibrate.stages import DEFAULT_METHOD, DEFAULT_SAMPLES, METHODS
    from bninception.cli import add_run_argument
    from bninception.core.settings import add_options
    from bninception.evaluate.bench import DEFAULT_BATCH_SIZES
    from bninception.model.config import TrainConfig
    from bninception.pipeline import STAGES

    add_run_argument(parser)
    parser.add_argument("--image-size", type=int, help="default: 32 for digits, 224 for ImageFolder")
    add_options(parser, TrainConfig, ("data", "epochs", "width"))
    parser.add_argument("--method", choices=METHODS, help=f"INT8 calibration method (default: {DEFAULT_METHOD})")
    parser.add_argument("--samples", type=int, help=f"INT8 calibration images (default: {DEFAULT_SAMPLES})")
    parser.add_argument("--batch-sizes", help=f"bench batch sizes (default: {','.join(map(str, DEFAULT_BATCH_SIZES))})")
    parser.add_argument("--force", choices=STAGES, metavar="STAGE",
                        help=f"redo STAGE and every stage after it ({', '.join(STAGES)})")
    parser.add_argument("--no-engines", action="store_true", help="skip TensorRT engines even on a GPU host")
    parser.add_argument("--keep-going", action="store_true",
                        help="run the stages after a failed one (like make -k); the exit status still fails")
    parser.add_argument("--json", action="store_true", help="print one JSON summary on stdout")


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from bninception.core.errors import BninceptionError
    from bninception.core.layout import REPORT_MD
    from bninception.core.rundir import RunDir
    from bninception.evaluate.bench import parse_batch_sizes
    from bninception.pipeline import PipelineOptions, run_pipeline

    run_dir = RunDir(args.run)
    int8 = {"method": args.method, "samples": args.samples}
    stage_options = {"int8": {k: v for k, v in int8.items() if v is not None}}
    if args.batch_sizes:
        stage_options["bench"] = {"batch_sizes": parse_batch_sizes(args.batch_sizes)}
    options = PipelineOptions(data=args.data, image_size=args.image_size, epochs=args.epochs, width=args.width,
                              force_from=args.force, engines=not args.no_engines, stage_options=stage_options,
                              keep_going=args.keep_going)
    result = run_pipeline(run_dir, options)
    if args.json:
        print(json.dumps({"run": str(run_dir.root), **result.to_dict()}))
    else:
        if result.validation is not None:
            print(result.validation.table())
        if result.bench is not None:
            print(result.bench.table())
        verdict = result.validation.verdict() if result.validation is not None else "not validated"
        failed = [r.stage for r in result.results if r.status == "failed"]
        verdict += f"; failed stages: {', '.join(failed)}" if failed else ""
        print(f"pipeline: {verdict} in {result.seconds:.1f} s; report: {run_dir.path(REPORT_MD)}",
              file=sys.stderr)
    if result.validation is not None and result.validation.errors():
        raise BninceptionError("; ".join(result.validation.errors()))
    return 0 if result.passed else 1

"""``bninception build-engine``: compile the run's ONNX models into TensorRT engines (GPU hosts)."""

from __future__ import annotations

import argparse

NAME = "build-engine"
HELP = "build TensorRT engines (engines/<key>.plan + .json) from the run's ONNX models; needs a GPU"
ORDER = 50


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from bninception.cli import add_run_argument

    add_run_argument(parser)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8", "all"],
                        help="fp32: model.folded.onnx, fp16: model.fp16.onnx, int8: model.int8.onnx; "
                             "all: every one whose ONNX exists (default: %(default)s)")
    from bninception.engines.key import BuildOptions as B
    from bninception.engines.profile import BatchProfile as P
    from bninception.engines.shim import HARDWARE_COMPATIBILITY

    for name, default in (("min", P.min), ("opt", P.opt), ("max", P.max)):
        parser.add_argument(f"--{name}-batch", type=int, default=default,
                            help=f"optimization profile {name} batch (default: %(default)s)")
    parser.add_argument("--workspace-gib", type=float, default=B.workspace_gib,
                        help="workspace memory pool limit in GiB (default: %(default)s)")
    parser.add_argument("--opt-level", type=int, default=B.opt_level,
                        help="builder optimization level 0..5 (default: %(default)s)")
    parser.add_argument("--hardware-compat", default=B.hardware_compatibility, choices=list(HARDWARE_COMPATIBILITY),
                        help="build a plan that also runs on other GPUs (default: %(default)s)")
    parser.add_argument("--cache", default=None,
                        help="engine cache folder shared between runs (default: $BNINCEPTION_ENGINE_CACHE)")
    parser.add_argument("--force", action="store_true", help="rebuild even if an engine with the key exists")
    parser.add_argument("--if-available", action="store_true",
                        help="exit 0 with a note when TensorRT or a GPU is missing (container start-up)")
    parser.add_argument("--list", action="store_true", help="list the run's engines and their sidecars")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from bninception.core.layout import PRECISION_FILES, PRECISIONS
    from bninception.core.rundir import RunDir
    from bninception.engines import available
    from bninception.engines.detect import probe_host
    from bninception.engines.store import classify_engines

    run_dir = RunDir(args.run, create=False)
    if args.list:
        statuses = classify_engines(run_dir, *probe_host())
        if args.json:
            print(json.dumps({"run": str(run_dir.root), "engines": [s.to_dict() for s in statuses]}))
        else:
            for status in statuses:
                print(f"{status.key}  {status.state}" + (f": {status.reason}" if status.reason else ""))
        return 0

    ok, reason = available()
    if not ok and args.if_available:
        print(f"build-engine: skipped, {reason}", file=sys.stderr)
        if args.json:
            print(json.dumps({"run": str(run_dir.root), "skipped": reason, "engines": []}))
        return 0

    from bninception.engines.stages import build_engine_stage

    precisions = list(PRECISIONS) if args.precision == "all" else [args.precision]
    if args.precision == "all":
        missing = [p for p in precisions if not run_dir.path(PRECISION_FILES[p]).is_file()]
        for p in missing:
            print(f"build-engine: no {PRECISION_FILES[p]}, skipping {p}", file=sys.stderr)
        precisions = [p for p in precisions if p not in missing]
    summaries = [build_engine_stage(run_dir, p, min_batch=args.min_batch, opt_batch=args.opt_batch,
                                    max_batch=args.max_batch, workspace_gib=args.workspace_gib,
                                    opt_level=args.opt_level, force=args.force,
                                    hardware_compatibility=args.hardware_compat, cache=args.cache).to_dict()
                 for p in precisions]
    if args.json:
        print(json.dumps({"run": str(run_dir.root), "engines": summaries}))
    return 0

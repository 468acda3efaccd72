"""bninception validate: every artifact against the PyTorch inference-form model (parity gates)."""

from __future__ import annotations

import argparse

NAME = "validate"
HELP = "check every artifact's accuracy and parity against model.pt (exit 1 when a gate fails)"
ORDER = 60


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from bninception.cli import add_run_argument

    add_run_argument(parser)
    parser.add_argument("--data", default=None,
                        help="digits or an ImageFolder PATH (default: the run's own test split)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate at most N images")
    parser.add_argument("--match-by-position", action="store_true",
                        help="score the dataset's k-th class folder as the model's class k (default: match class "
                             "folders to the model's classes by id or name, and refuse what matches none)")
    parser.add_argument("--providers", default=None,
                        help="comma-separated execution providers whose rows to check: cpu, openvino, cuda, tensorrt "
                             "(TensorRT: the run's engines; default: every one this ONNX Runtime build has)")
    parser.add_argument("--no-engines", action="store_true", help="leave TensorRT engines out")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def providers_and_engines(text: str | None, no_engines: bool) -> tuple[list[str] | None, bool]:
    """``--providers`` and ``--no-engines`` -> (providers for the ONNX rows, None: all; include engines)."""
    from bninception.core.ort import parse_providers

    chosen = parse_providers(text)
    if chosen is None:
        return None, not no_engines
    return [p for p in chosen if p != "tensorrt"], "tensorrt" in chosen and not no_engines


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from bninception.core.errors import BninceptionError, GateFailure
    from bninception.core.layout import VALIDATE_JSON
    from bninception.core.rundir import RunDir
    from bninception.evaluate.validate import validate_stage

    if args.limit is not None and args.limit < 1:
        raise BninceptionError(f"--limit must be at least 1, got {args.limit}")
    providers, engines = providers_and_engines(args.providers, args.no_engines)
    run_dir = RunDir(args.run, create=False)
    report = validate_stage(run_dir, args.data, force=True, include_engines=engines, limit=args.limit,
                            providers=providers, by_position=args.match_by_position).value
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.table())
        print(f"wrote {run_dir.path(VALIDATE_JSON)}", file=sys.stderr)
    if report.errors():  # an artifact that cannot be run at all is bad input, not a failed gate
        raise BninceptionError("; ".join(report.errors()))
    if not report.passed:
        raise GateFailure("; ".join(report.failures()))
    return 0

"""python -m experiments.paper fig1|lr: the paper's experiments at small scale, with figures (``make reproduce``).

Figure 1 (an MLP with and without BN) or Figures 2-3 (BN-Inception at several learning rates), on digits.
"""

from __future__ import annotations

import argparse
import sys

DEFAULT_OUT = "runs/reproduce"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from bninception.core.settings import add_options
    from experiments.paper.fig1_config import Fig1Config
    from experiments.paper.lr import LrConfig

    parser.add_argument("experiment", choices=("fig1", "lr"),
                        help="fig1: 3x100 sigmoid MLP with and without BN; "
                             "lr: BN-Inception at several learning rates")
    parser.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: these networks are tiny, and extra threads "
                             "on shared cores slow torch down)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON document")
    add_options(parser.add_argument_group("fig1"), Fig1Config)
    lr = parser.add_argument_group("lr")
    add_options(lr, LrConfig)
    lr.add_argument("--runs", default=None,
                    help="comma-separated subset of "
                         "Inception,BN-Baseline,BN-x5,BN-x30,BN-x5-Sigmoid,Inception-Sigmoid")
    lr.add_argument("--jobs", type=int, default=2,
                    help="networks trained at once, one process each (default %(default)s)")


def _progress(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)


def _fig1(args: argparse.Namespace) -> dict[str, object]:
    from bninception.core.settings import options_of
    from experiments.paper.fig1 import run_fig1
    from experiments.paper.fig1_config import Fig1Config
    from experiments.paper.outputs import write_fig1

    cfg = Fig1Config(seed=args.seed, **options_of(args, Fig1Config))
    result = run_fig1(cfg, report=_progress)
    paths = write_fig1(result, args.out)
    return {**result.summary(), "files": [str(p) for p in paths]}


def _lr(args: argparse.Namespace) -> dict[str, object]:
    from dataclasses import replace

    from bninception.core.settings import options_of
    from experiments.paper.lr import LrConfig, run_lr
    from experiments.paper.outputs import lr_markdown, write_lr

    cfg = LrConfig(seed=args.seed, **options_of(args, LrConfig))
    if args.runs:
        cfg = replace(cfg, runs=tuple(r.strip() for r in args.runs.split(",") if r.strip()))
    result = run_lr(cfg, report=_progress, jobs=args.jobs, threads=args.threads)
    paths = write_lr(result, args.out)
    if not args.json:
        print(lr_markdown(result), end="")
    return {**result.summary(), "files": [str(p) for p in paths]}


def run(args: argparse.Namespace) -> int:
    """Run the experiment ``args`` names, write its figures and tables, print the summary."""
    import json
    import time

    import torch

    from bninception.core.errors import BninceptionError

    if args.threads < 1:
        raise BninceptionError(f"--threads must be >= 1, got {args.threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    try:
        summary = _fig1(args) if args.experiment == "fig1" else _lr(args)
    finally:
        torch.set_num_threads(previous)
    summary["wall_seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        if args.experiment == "fig1":
            acc, drift = summary["final_test_accuracy"], summary["percentile_drift"]
            print(f"fig1: final test accuracy without BN {acc['no_bn']:.4f}, with BN {acc['bn']:.4f}; "  # type: ignore[index]
                  f"percentile drift without BN {drift['no_bn']:.3f}, with BN {drift['bn']:.3f}")  # type: ignore[index]
        print(f"wrote {', '.join(summary['files'])} in {summary['wall_seconds']} s")  # type: ignore[arg-type]
    return 0


def main(argv: list[str] | None = None) -> int:
    from bninception.core.errors import BninceptionError

    parser = argparse.ArgumentParser(prog="python -m experiments.paper", description=__doc__.splitlines()[0])
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except BninceptionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

"""bninception population: inference BatchNorm with population statistics (Algorithm 2)."""

from __future__ import annotations

import argparse

NAME = "population"
HELP = "set BN statistics to the population mean/variance over training batches (Algorithm 2)"
ORDER = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from bninception.cli import add_run_argument
    from bninception.model.stages import POPULATION_BATCH_SIZE, POPULATION_BATCHES

    add_run_argument(parser)
    parser.add_argument("--batches", type=int, default=POPULATION_BATCHES,
                        help="training mini-batches (N; default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=POPULATION_BATCH_SIZE,
                        help="mini-batch size (M; default: %(default)s)")
    parser.add_argument("--force", action="store_true")


def run(args: argparse.Namespace) -> int:
    from bninception.core.rundir import RunDir
    from bninception.model.stages import population_stage

    population_stage(RunDir(args.run), batches=args.batches, batch_size=args.batch_size, force=args.force)
    return 0

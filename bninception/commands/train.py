"""bninception train: the paper's BN training recipe on digits or an ImageFolder."""

from __future__ import annotations

import argparse

NAME = "train"
HELP = "train BN-Inception (paper recipe: raised rate, no dropout, 5x less L2, fast decay)"
ORDER = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from bninception.cli import add_run_argument
    from bninception.core.settings import add_options
    from bninception.model.config import TrainConfig

    add_run_argument(parser)
    parser.add_argument("--image-size", type=int, help="default: 32 for digits, 224 for an ImageFolder")
    add_options(parser, TrainConfig)
    parser.add_argument("--resume", action="store_true", help="continue from the run's checkpoint.pt")
    parser.add_argument("--force", action="store_true", help="retrain even if up to date")


def run(args: argparse.Namespace) -> int:
    from bninception.core.rundir import RunDir
    from bninception.core.settings import options_of
    from bninception.model.config import TrainConfig, default_image_size
    from bninception.model.stages import train_stage

    cfg = TrainConfig(**options_of(args, TrainConfig), image_size=args.image_size or default_image_size(args.data))
    train_stage(RunDir(args.run), cfg, resume=args.resume, force=args.force)
    return 0

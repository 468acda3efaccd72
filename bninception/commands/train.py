"""bninception train: the paper's BN training recipe on digits or an ImageFolder."""

from __future__ import annotations

import argparse

NAME = "train"
HELP = "train BN-Inception (paper recipe: raised rate, no dropout, 5x less L2, fast decay)"
ORDER = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from bninception.cli import add_run_argument

    add_run_argument(parser)
    parser.add_argument("--data", default="digits", help="'digits' (built-in) or an ImageFolder path")
    parser.add_argument("--image-size", type=int, help="default: 32 for digits, 224 for an ImageFolder")
    parser.add_argument("--width", type=float, default=0.25, help="channel width multiplier")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64, help="per process")
    parser.add_argument("--lr-scale", type=float, default=5.0, help="times the base rate (1, 5, 30)")
    parser.add_argument("--base-lr", type=float, default=0.01)
    parser.add_argument("--lr-decay", type=float, default=0.9, help="exponential decay per epoch")
    parser.add_argument("--activation", choices=("relu", "sigmoid"), default="relu")
    parser.add_argument("--no-batchnorm", action="store_true", help="the paper's Inception baseline")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under torchrun (GPU)")
    parser.add_argument("--resume", action="store_true", help="continue from the run's checkpoint.pt")
    parser.add_argument("--force", action="store_true", help="retrain even if up to date")


def run(args: argparse.Namespace) -> int:
    from bninception.core.rundir import RunDir
    from bninception.model.data import default_image_size
    from bninception.model.stages import train_stage
    from bninception.model.train import TrainConfig

    cfg = TrainConfig(data=args.data, image_size=args.image_size or default_image_size(args.data),
                      width=args.width, epochs=args.epochs,
                      batch_size=args.batch_size, lr_scale=args.lr_scale, base_lr=args.base_lr,
                      lr_decay=args.lr_decay, activation=args.activation,
                      batchnorm=not args.no_batchnorm, dropout=args.dropout, seed=args.seed,
                      sync_bn=args.sync_bn)
    train_stage(RunDir(args.run), cfg, resume=args.resume, force=args.force)
    return 0

"""bninception train: the paper's BN training recipe on digits or an ImageFolder."""

from __future__ import annotations

import argparse

NAME = "train"
HELP = "train BN-Inception (paper recipe: raised rate, no dropout, 5x less L2, fast decay)"
ORDER = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from bninception.cli import add_run_argument
    from bninception.model.config import INIT_SCHEMES
    from bninception.model.config import TrainConfig as T

    add_run_argument(parser)
    parser.add_argument("--data", default=T.data, help="'digits' (built-in) or an ImageFolder path")
    parser.add_argument("--image-size", type=int, help="default: 32 for digits, 224 for an ImageFolder")
    parser.add_argument("--width", type=float, default=T.width, help="channel width multiplier (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=T.epochs, help="(default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=T.batch_size, help="per process (default: %(default)s)")
    parser.add_argument("--lr-scale", type=float, default=T.lr_scale,
                        help="times the base rate: 1, 5 (BN-x5), 30 (BN-x30) (default: %(default)s)")
    parser.add_argument("--base-lr", type=float, default=T.base_lr, help="(default: %(default)s)")
    parser.add_argument("--lr-decay", type=float, default=T.lr_decay,
                        help="exponential decay per epoch (default: %(default)s)")
    parser.add_argument("--activation", choices=("relu", "sigmoid"), default=T.activation)
    parser.add_argument("--no-batchnorm", action="store_true", help="the paper's Inception baseline")
    parser.add_argument("--dropout", type=float, default=T.dropout, help="(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=T.seed)
    parser.add_argument("--init", choices=INIT_SCHEMES, default=T.init,
                        help="conv/linear weights: PyTorch's defaults or GoogLeNet's xavier fillers "
                             "(default: %(default)s)")
    parser.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under torchrun (GPU)")
    parser.add_argument("--resume", action="store_true", help="continue from the run's checkpoint.pt")
    parser.add_argument("--force", action="store_true", help="retrain even if up to date")


def run(args: argparse.Namespace) -> int:
    from bninception.core.rundir import RunDir
    from bninception.model.config import TrainConfig, default_image_size
    from bninception.model.stages import train_stage

    cfg = TrainConfig(data=args.data, image_size=args.image_size or default_image_size(args.data),
                      width=args.width, epochs=args.epochs, batch_size=args.batch_size, lr_scale=args.lr_scale,
                      base_lr=args.base_lr, lr_decay=args.lr_decay, activation=args.activation,
                      batchnorm=not args.no_batchnorm, dropout=args.dropout, seed=args.seed, sync_bn=args.sync_bn,
                      init=args.init)
    train_stage(RunDir(args.run), cfg, resume=args.resume, force=args.force)
    return 0

"""bninception import-weights: Caffe-converted BN-Inception weights (pretrainedmodels layout)."""

from __future__ import annotations

import argparse

NAME = "import-weights"
HELP = "import pretrained BN-Inception weights (pretrainedmodels/TSN layout) into a run's model.pt"
ORDER = 25


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from bninception.cli import add_run_argument

    parser.add_argument("file", help="state dict file (.pth)")
    parser.add_argument("--format", default="pretrainedmodels", choices=("pretrainedmodels",))
    parser.add_argument("--labels", help="text file with one class name per line")
    add_run_argument(parser)
    parser.add_argument("--force", action="store_true")


def run(args: argparse.Namespace) -> int:
    from bninception.core.errors import BninceptionError
    from bninception.core.rundir import RunDir
    from bninception.model.stages import import_weights_stage

    labels = None
    if args.labels:
        try:
            with open(args.labels, encoding="utf-8") as handle:
                labels = [line.strip() for line in handle if line.strip()]
        except OSError as exc:
            raise BninceptionError(f"cannot read labels file {args.labels}: {exc}") from exc
    import_weights_stage(RunDir(args.run), args.file, args.format, labels, force=args.force)
    return 0

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
    parser.add_argument("--labels", help="labels file: one class label per line, or id<TAB>name per line "
                                         "(default: ImageNet-1k's WordNet ids and names for 1000 classes)")
    add_run_argument(parser)
    parser.add_argument("--force", action="store_true")


def run(args: argparse.Namespace) -> int:
    from bninception.core.rundir import RunDir
    from bninception.model.stages import import_weights_stage

    import_weights_stage(RunDir(args.run), args.file, args.format, args.labels, force=args.force)
    return 0

"""The ``bninception`` command line: one subcommand per module in ``bninception.commands``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from types import ModuleType

from bninception import __version__, commands
from bninception.core.errors import BninceptionError, GateFailure

DEFAULT_RUN = "runs/demo"


def add_run_argument(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """``--run DIR``; ``--run-dir`` is the same option under a name torchrun's parser leaves alone."""
    parser.add_argument("--run", "--run-dir", dest="run", default=None if required else DEFAULT_RUN,
                        required=required,
                        help="run directory (default: %(default)s)" if not required else "run directory")


def _command_modules() -> list[ModuleType]:
    found = [importlib.import_module(f"{commands.__name__}.{name}") for name in commands.MODULES]
    return sorted(found, key=lambda m: (getattr(m, "ORDER", 100), m.NAME))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bninception",
        description="BN-Inception from PyTorch training to ONNX, FP16/INT8 and TensorRT, "
                    "with numerical parity checked at every step.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, tracebacks on error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _command_modules():
        cmd = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(message)s", stream=sys.stderr)
    if not getattr(args, "_handler", None):
        parser.print_help()
        return 2
    try:
        return int(args._handler(args) or 0)
    except GateFailure as exc:
        print(f"FAIL: {exc}", file=sys.stderr)
        return 1
    except BninceptionError as exc:
        if args.verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the host refused: disk full, read-only, permission denied
        if args.verbose:
            raise
        where = f" {exc.filename}" if exc.filename else ""
        print(f"error: cannot access{where}: {exc.strerror or exc} (finished artifacts are kept; the "
              f"unfinished stage left nothing behind)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished artifacts are kept, the unfinished stage left nothing behind",
              file=sys.stderr)
        return 130

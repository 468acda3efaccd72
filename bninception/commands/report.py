"""bninception report: report.md + report.json + figures from what the stages left in the run."""

from __future__ import annotations

import argparse

NAME = "report"
HELP = "write report.md, report.json and PNG figures into the run"
ORDER = 68


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from bninception.cli import add_run_argument

    add_run_argument(parser)


def run(args: argparse.Namespace) -> int:
    from bninception.core.rundir import RunDir
    from bninception.evaluate.report import write_report

    for path in write_report(RunDir(args.run, create=False)):
        print(path)
    return 0

"""Runs put together by hand: files a test writes itself, recorded as if their stage had written them."""

from __future__ import annotations

import shutil
from pathlib import Path

from bninception.core.rundir import RunDir
from bninception.core.stage import Done, StageSpec, run_stage


def recorded(run: RunDir, stage: str, *names: str) -> RunDir:
    """Record ``names`` (already in ``run``) in its manifest as the outputs of a finished ``stage``."""
    run.record(stage, {"by": "test"}, [], list(names), 0.0)
    return run


def copy_run(run: RunDir, target: Path) -> RunDir:
    """A private copy of ``run`` at ``target``, for a test that changes it."""
    shutil.copytree(run.root, target)
    return RunDir(target)


def produce(run: RunDir, name: str, text: str) -> None:
    """``name`` written and recorded by a finished stage ``make``."""
    run_stage(run, StageSpec("make", {"text": text}, [], [name]),
              lambda: Done(message=str(run.path(name).write_text(text))))

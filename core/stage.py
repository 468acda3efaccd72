"""The stage skeleton: require inputs -> skip when fresh -> run -> record, returning one :class:`StageResult`."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bninception.core.errors import BninceptionError
from bninception.core.rundir import RunDir

log = logging.getLogger("bninception.stage")


@dataclass(frozen=True)
class StageSpec:
    """What a stage reads, writes and depends on (paths relative to the run directory)."""

    name: str
    params: Mapping[str, Any]
    inputs: list[str]
    outputs: list[str]
    optional_outputs: tuple[str, ...] = ()  # written when they pass their own check (recorded if present)
    hints: Mapping[str, str] = field(default_factory=dict)  # input -> how to make it
    resumable: bool = False  # a failed run keeps its outputs to resume from (readers refuse them unrecorded)


@dataclass
class Done:
    """What a stage body returns: its summary numbers, a typed value for the caller, one log line."""

    summary: dict[str, Any] = field(default_factory=dict)
    value: Any = None
    message: str = ""


@dataclass
class StageResult:
    """One stage's outcome: ``status`` is ``done``, ``skipped`` or ``failed`` (the pipeline's keep-going)."""

    stage: str
    status: str
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)
    value: Any = field(default=None, repr=False)

    @property
    def skipped(self) -> bool:
        return self.status == "skipped"

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "status": self.status, "seconds": round(self.seconds, 3), **self.summary}


def recorded_outputs(run: RunDir, spec: StageSpec) -> list[str]:
    return [*spec.outputs, *(name for name in spec.optional_outputs if run.path(name).is_file())]


def discard_unrecorded(run: RunDir, spec: StageSpec) -> list[str]:
    """Remove the outputs a failed stage left that its last record does not vouch for, so that no later
    command finds a file of the unfinished run (a killed process leaves them, and readers refuse them)."""
    removed = []
    for name in (*spec.outputs, *spec.optional_outputs):
        path = run.path(name)
        try:
            if path.is_file() and run.problem(name) is not None:
                path.unlink()
                removed.append(name)
        except (OSError, BninceptionError) as exc:
            log.warning("stage %s: could not remove its unfinished output %s: %s", spec.name, path, exc)
    if removed:
        log.warning("stage %s failed; removed its unfinished outputs: %s", spec.name, ", ".join(removed))
    return removed


def run_stage(run: RunDir, spec: StageSpec, body: Callable[[], Done], *, force: bool = False,
              check_fresh: bool = True, record: bool = True, on_skip: Callable[[], Any] | None = None,
              known: Mapping[str, Any] | None = None) -> StageResult:
    """Run ``body`` unless the stage is fresh, and record it after success (a failed body records nothing).

    ``on_skip`` gives a skipped stage its value back; ``known`` is summary known before running.
    """
    known = dict(known or {})
    for name in spec.inputs:  # only what a finished stage recorded, unchanged since
        run.verified(name, spec.hints.get(name, ""))
    # under torchrun every rank runs the stage and rank 0 records: only the recording rank holds the lock
    with run.locked(spec.name) if record else contextlib.nullcontext():
        if check_fresh and not force and run.is_fresh(spec.name, dict(spec.params), spec.inputs,
                                                      recorded_outputs(run, spec)):
            log.info("stage %s: up to date, skipped", spec.name)
            return StageResult(spec.name, "skipped", 0.0, known, on_skip() if on_skip else None)
        for name in (*spec.outputs, *spec.optional_outputs):  # what a killed earlier attempt left half-written
            for stale in run.root.glob(f".{name}.*.tmp"):
                stale.unlink(missing_ok=True)
        read = {name: run.sha256(name) for name in spec.inputs}  # what the body is about to read
        started = time.perf_counter()
        try:
            done = body()
        except BaseException:
            if record and not spec.resumable:
                discard_unrecorded(run, spec)
            raise
        seconds = time.perf_counter() - started
        changed = [name for name in spec.inputs if not run.path(name).is_file() or run.sha256(name) != read[name]]
        if changed:
            raise BninceptionError(f"stage {spec.name}: {', '.join(changed)} changed while the stage read it; its "
                                   f"outputs may mix two versions and are not recorded: re-run the stage")
        if record:
            run.record(spec.name, dict(spec.params), read, recorded_outputs(run, spec), seconds)
    log.info("stage %s: %s (%.1f s)", spec.name, done.message or "done", seconds)
    return StageResult(spec.name, "done", seconds, {**known, **done.summary}, done.value)

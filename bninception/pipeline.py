"""The main job: every stage in order, each skipped when its manifest record is fresh.

train -> population -> export -> fold -> fp16 -> int8 -> engines -> validate -> bench -> report;
``force_from`` redoes one stage and every stage after it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bninception.core.errors import BninceptionError
from bninception.core.rundir import RunDir
from bninception.core.stage import StageResult

log = logging.getLogger("bninception.pipeline")

STAGES = ("train", "population", "export", "fold", "fp16", "int8", "engines", "validate", "bench", "report")


@dataclass
class PipelineOptions:
    """What the pipeline may change: the training recipe, each stage's keyword arguments, stages to skip."""

    data: str = "digits"
    image_size: int | None = None
    epochs: int | None = None
    width: float | None = None
    force_from: str | None = None
    engines: bool = True
    extra_train: dict[str, Any] = field(default_factory=dict)
    stage_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # e.g. {"int8": {"samples": 256}}
    skip: dict[str, str] = field(default_factory=dict)  # stage -> why it is not run
    keep_going: bool = False  # a failed stage is a result and the next stages still run (make -k)


@dataclass
class PipelineResult:
    seconds: float
    results: list[StageResult] = field(default_factory=list)

    @property
    def validation(self) -> Any:
        return next((r.value for r in self.results if r.stage == "validate"), None)

    @property
    def bench(self) -> Any:
        return next((r.value for r in self.results if r.stage == "bench"), None)

    @property
    def passed(self) -> bool:
        failed = any(r.status == "failed" for r in self.results)
        return not failed and self.validation is not None and bool(self.validation.passed)

    def statuses(self) -> dict[str, str]:
        return {r.stage: r.status for r in self.results}

    def to_dict(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 2), "passed": self.passed,
                "stages": [{"stage": r.stage, "status": r.status, "seconds": round(r.seconds, 3),
                            **({"error": r.summary["error"]} if r.status == "failed" else {})} for r in self.results],
                "validate": self.validation.to_dict() if self.validation is not None else None}


def _train_config(options: PipelineOptions) -> Any:
    from bninception.model.config import TrainConfig, default_image_size

    values: dict[str, Any] = {"data": options.data, **options.extra_train,
                              "image_size": options.image_size or default_image_size(options.data)}
    if options.epochs is not None:
        values["epochs"] = options.epochs
    if options.width is not None:
        values["width"] = options.width
    return TrainConfig(**values)


def _engine_stages(run: RunDir, force: bool) -> list[StageResult]:
    from bninception.core.layout import PRECISIONS
    from bninception.engines import available
    from bninception.engines.stages import build_engine_stage

    ok, reason = available()
    if not ok:
        log.info("stage engines: skipped: %s", reason)
        return [StageResult("engines", "skipped", 0.0, {"reason": reason})]
    return [build_engine_stage(run, precision, force=force) for precision in PRECISIONS]


def run_pipeline(run: RunDir, options: PipelineOptions) -> PipelineResult:
    """Run every stage; the result says which ran, which were skipped, and whether every gate passed."""
    from bninception.calibrate.stages import fp16_stage, int8_stage
    from bninception.evaluate.bench import bench_stage
    from bninception.evaluate.report import report_stage
    from bninception.evaluate.validate import validate_stage
    from bninception.export.stages import export_stage, fold_stage
    from bninception.model.stages import population_stage, train_stage

    if options.force_from is not None and options.force_from not in STAGES:
        raise BninceptionError(f"--force takes one of {', '.join(STAGES)}; got {options.force_from!r}")
    first_forced = STAGES.index(options.force_from) if options.force_from else len(STAGES)
    stages = run.manifest()["stages"]
    skip, stage_options = dict(options.skip), {k: dict(v) for k, v in options.stage_options.items()}
    if "import-weights" in stages and "train" not in stages:
        skip.update(train="the run holds imported weights", population="the run holds imported weights")
        stage_options.setdefault("validate", {}).setdefault("data", None if options.data == "digits" else options.data)
    if not options.engines:
        skip["engines"] = "--no-engines"

    def opts(name: str) -> dict[str, Any]:
        return stage_options.get(name, {})

    steps: dict[str, Callable[[bool], StageResult | list[StageResult]]] = {
        "train": lambda f: train_stage(run, _train_config(options), force=f, **opts("train")),
        "population": lambda f: population_stage(run, force=f, **opts("population")),
        "export": lambda f: export_stage(run, force=f),
        "fold": lambda f: fold_stage(run, force=f),
        "fp16": lambda f: fp16_stage(run, force=f),
        "int8": lambda f: int8_stage(run, force=f, **opts("int8")),
        "engines": lambda f: _engine_stages(run, f),
        "validate": lambda f: validate_stage(run, force=f, **opts("validate")),
        "bench": lambda f: bench_stage(run, force=f, **opts("bench")),
        "report": lambda f: report_stage(run, force=f),
    }
    result = PipelineResult(seconds=0.0)
    started = time.perf_counter()
    for index, name in enumerate(STAGES):
        if name in skip:
            log.info("stage %s: skipped (%s)", name, skip[name])
            result.results.append(StageResult(name, "skipped", 0.0, {"reason": skip[name]}))
            continue
        try:
            output = steps[name](index >= first_forced)
        except BninceptionError as exc:
            if not options.keep_going:
                raise
            log.warning("stage %s failed: %s", name, exc)
            output = StageResult(name, "failed", 0.0, {"error": str(exc)})
        result.results += output if isinstance(output, list) else [output]
    result.seconds = time.perf_counter() - started
    return result

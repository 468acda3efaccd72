"""The main job: every stage in order, each skipped when its manifest record is fresh.

train -> population -> export -> fold -> fp16 -> int8 -> engines -> validate -> bench -> report

``force_from`` redoes one stage and every stage after it. A stage that is interrupted leaves the
previous good artifacts (atomic writes) and no record claiming the missing ones, so the next run
redoes only what is missing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bninception.core.errors import BninceptionError
from bninception.core.rundir import RunDir

log = logging.getLogger("bninception.pipeline")

STAGES = ("train", "population", "export", "fold", "fp16", "int8", "engines", "validate", "bench", "report")


@dataclass
class PipelineOptions:
    data: str = "digits"
    image_size: int | None = None
    epochs: int | None = None
    width: float | None = None
    int8_method: str = "percentile"
    calibration_samples: int = 512
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    force_from: str | None = None
    engines: bool = True
    extra_train: dict[str, Any] = field(default_factory=dict)


@dataclass
class PipelineResult:
    seconds: float
    stages: dict[str, float]
    passed: bool
    validation: Any = None
    bench: Any = None


def _train_config(options: PipelineOptions) -> Any:
    from bninception.model.data import default_image_size
    from bninception.model.train import TrainConfig

    values: dict[str, Any] = {"data": options.data, **options.extra_train,
                              "image_size": options.image_size or default_image_size(options.data)}
    if options.epochs is not None:
        values["epochs"] = options.epochs
    if options.width is not None:
        values["width"] = options.width
    return TrainConfig(**values)


def _engine_stages(run: RunDir, force: bool) -> None:
    from bninception.engines import available
    from bninception.engines.stages import build_engine_stage

    ok, reason = available()
    if not ok:
        log.info("engines: skipped: %s", reason)
        return
    for precision in ("fp32", "fp16", "int8"):
        build_engine_stage(run, precision, force=force)


def run_pipeline(run: RunDir, options: PipelineOptions) -> PipelineResult:
    """Run every stage; returns timings and whether every parity/accuracy gate passed."""
    from bninception.bench import bench_stage
    from bninception.calibrate.stages import fp16_stage, int8_stage
    from bninception.export.stages import export_stage, fold_stage
    from bninception.model.stages import population_stage, train_stage
    from bninception.report import report_stage
    from bninception.validate import validate_stage

    if options.force_from is not None and options.force_from not in STAGES:
        raise BninceptionError(f"--force takes one of {', '.join(STAGES)}; got {options.force_from!r}")
    first_forced = STAGES.index(options.force_from) if options.force_from else len(STAGES)
    stages = run.manifest()["stages"]
    imported = "import-weights" in stages and "train" not in stages
    validation_data = None if not imported or options.data == "digits" else options.data
    result = PipelineResult(seconds=0.0, stages={}, passed=True)

    steps: list[tuple[str, Callable[[bool], Any]]] = [
        ("train", lambda f: train_stage(run, _train_config(options), force=f)),
        ("population", lambda f: population_stage(run, force=f)),
        ("export", lambda f: export_stage(run, force=f)),
        ("fold", lambda f: fold_stage(run, force=f)),
        ("fp16", lambda f: fp16_stage(run, force=f)),
        ("int8", lambda f: int8_stage(run, method=options.int8_method,
                                      samples=options.calibration_samples, force=f)),
        ("engines", lambda f: _engine_stages(run, f) if options.engines else
         log.info("engines: skipped (--no-engines)")),
        ("validate", lambda f: validate_stage(run, data=validation_data, force=f)),
        ("bench", lambda f: bench_stage(run, options.batch_sizes, force=f)),
        ("report", lambda f: report_stage(run, force=f)),
    ]
    started = time.perf_counter()
    for index, (name, step) in enumerate(steps):
        if imported and name in ("train", "population"):
            log.info("%s: skipped (the run holds imported weights)", name)
            continue
        stage_started = time.perf_counter()
        output = step(index >= first_forced)
        result.stages[name] = round(time.perf_counter() - stage_started, 2)
        if name == "validate":
            result.validation = output
            result.passed = bool(output.passed)
        elif name == "bench":
            result.bench = output
    result.seconds = time.perf_counter() - started
    return result

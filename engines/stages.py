"""The ``build-engine`` stage: one TensorRT engine per precision, reused by key, recorded in the manifest.

Precision -> source ONNX: fp32 -> model.folded.onnx, fp16 -> model.fp16.onnx,
int8 -> model.int8.onnx (precision lives in the model: strongly typed networks only).

Order of reuse, cheapest first (none of them with ``force``):
1. the manifest says the stage is fresh (same params, same ONNX hash, outputs intact): skipped;
2. ``engines/<key>.plan`` + ``.json`` already in the run (e.g. the manifest was lost) and the plan
   matches its sidecar: reused and recorded;
3. the pair is in the engine cache (``$BNINCEPTION_ENGINE_CACHE``): copied in and recorded;
4. otherwise built, written atomically, recorded, and copied into the cache.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bninception.core.errors import BninceptionError
from bninception.core.files import sha256_bytes
from bninception.core.rundir import RunDir
from bninception.engines.detect import HostEnv, host_env
from bninception.engines.key import (
    PRECISION_SOURCES,
    BuildOptions,
    EngineSpec,
    Sidecar,
    compatibility_problem,
)
from bninception.engines.profile import BatchProfile, OnnxInput, profile_shapes, read_onnx_input
from bninception.engines.store import (
    ENGINES_DIR,
    EngineRecord,
    cache_dir,
    fetch_from_cache,
    list_engines,
    plan_name,
    read_plan,
    read_sidecar,
    sidecar_name,
    store_in_cache,
    write_engine,
)

log = logging.getLogger(__name__)

log = logging.getLogger(__name__)

# (onnx path, spec, onnx input, timing cache path) -> (plan bytes, policy)
PlanBuilder = Callable[[Path, EngineSpec, OnnxInput, Path | None], tuple[bytes, dict[str, Any]]]

SOURCE_HINTS = {"fp32": "run `bninception fold --run RUN` first",
                "fp16": "run `bninception calibrate --run RUN --precision fp16` first",
                "int8": "run `bninception calibrate --run RUN --precision int8` first"}


def stage_name(precision: str) -> str:
    return f"build-engine-{precision}"


def timing_cache_name(env: HostEnv) -> str:
    """Beside the engines; one per TensorRT version and GPU architecture (caches do not transfer)."""
    return f"{ENGINES_DIR}/timing-trt{env.trt_version}-sm{env.compute_capability.replace('.', '')}.cache"


def stage_params(spec: EngineSpec) -> dict[str, Any]:
    fields = spec.key_fields()
    fields.pop("onnx_sha256")  # an input hash, recorded by the manifest as such
    return {**fields, "key": spec.key()}


def _existing_pair(run: RunDir, key: str) -> Sidecar | None:
    plan, side = run.path(plan_name(key)), run.path(sidecar_name(key))
    if not (plan.is_file() and side.is_file()):
        return None
    try:
        sidecar = read_sidecar(side)
        read_plan(plan, sidecar)
    except BninceptionError as exc:
        log.warning("ignoring %s: %s", plan, exc)
        return None
    return sidecar if sidecar.key == key else None


def _check_source(onnx_input: OnnxInput, path: Path) -> None:
    if onnx_input.elem_type != "FLOAT":
        raise BninceptionError(f"{path}: input {onnx_input.name!r} is {onnx_input.elem_type}; the engines "
                               "take FP32 input (reduced precision lives inside the model)")


def build_engine_stage(run: RunDir, precision: str, min_batch: int = 1, opt_batch: int = 8,
                       max_batch: int = 32, workspace_gib: float = 2.0, opt_level: int = 3,
                       force: bool = False, hardware_compatibility: str = "none",
                       cache: str | Path | None = None, env: HostEnv | None = None,
                       builder: PlanBuilder | None = None) -> dict[str, Any]:
    """Build (or reuse) the ``precision`` engine of ``run``; returns a summary dict.

    ``env`` and ``builder`` default to this host's TensorRT/GPU and the real TensorRT builder;
    tests pass their own to exercise the key, reuse and manifest rules without a GPU.
    """
    if precision not in PRECISION_SOURCES:
        raise BninceptionError(f"precision must be one of {sorted(PRECISION_SOURCES)}, got {precision!r}")
    profile = BatchProfile(min_batch, opt_batch, max_batch)
    options = BuildOptions(workspace_gib, opt_level, hardware_compatibility)
    source = PRECISION_SOURCES[precision]
    source_path = run.require(source, SOURCE_HINTS[precision].replace("RUN", str(run.root)))
    env = env if env is not None else host_env()
    spec = EngineSpec(precision, profile, run.sha256(source), env, options)
    key = spec.key()
    stage, params = stage_name(precision), stage_params(spec)
    outputs = [plan_name(key), sidecar_name(key)]
    summary: dict[str, Any] = {"stage": stage, "precision": precision, "key": key,
                               "plan": str(run.path(outputs[0])), "sidecar": str(run.path(outputs[1])),
                               "profile": profile.to_dict(), "host": env.describe()}

    if not force and run.is_fresh(stage, params, [source], outputs):
        log.info("stage %s: up to date, skipped", stage)
        return {**summary, "status": "skipped"}

    start = time.perf_counter()
    engines = run.path(ENGINES_DIR)
    cache_path = cache_dir(cache)
    status = "built"
    sidecar = None if force else _existing_pair(run, key)
    if sidecar is not None:
        status = "reused"
    elif not force and cache_path is not None:
        sidecar = fetch_from_cache(cache_path, key, engines)
        status = "cached" if sidecar is not None else status
    if sidecar is None:
        onnx_input = read_onnx_input(source_path)
        _check_source(onnx_input, source_path)
        profile_shapes(onnx_input.shape, profile, onnx_input.name)  # fail before TensorRT does
        log.info("stage %s: building %s from %s (%s)", stage, key, source, env.describe())
        if builder is None:
            from bninception.engines.build import build_plan

            builder = build_plan
        plan, policy = builder(source_path, spec, onnx_input, run.path(timing_cache_name(env)))
        if not plan:
            raise BninceptionError(f"the TensorRT builder returned an empty plan for {source}")
        sidecar = Sidecar(key=key, spec=spec, plan_sha256=sha256_bytes(plan), plan_bytes=len(plan),
                          build_seconds=time.perf_counter() - start,
                          built_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), input_name=onnx_input.name,
                          input_shape=tuple(int(d) for d in onnx_input.shape[1:] if d is not None),
                          policy=policy)
        write_engine(engines, sidecar, plan)
        if cache_path is not None:
            store_in_cache(cache_path, key, engines)
    seconds = time.perf_counter() - start
    run.record(stage, params, [source], outputs, seconds)
    log.info("stage %s: %s %s in %.1f s", stage, status, outputs[0], seconds)
    return {**summary, "status": status, "seconds": round(seconds, 3),
            "plan_bytes": sidecar.plan_bytes, "build_seconds": sidecar.build_seconds}


def select_engine(run: RunDir, precision: str, here: HostEnv | None = None) -> EngineRecord:
    """The run's usable ``precision`` engine for the current source ONNX (and this host, if given).

    Prefers the engine the manifest records for the stage; raises a clear error when none fits.
    """
    source = PRECISION_SOURCES.get(precision)
    if source is None:
        raise BninceptionError(f"precision must be one of {sorted(PRECISION_SOURCES)}, got {precision!r}")
    current = run.sha256(source) if run.path(source).is_file() else None
    candidates = [r for r in list_engines(run, verify=True) if r.precision == precision and r.problem is None]
    reasons = []
    usable = []
    for record in candidates:
        assert record.sidecar is not None
        spec = record.sidecar.spec
        if current is not None and spec.onnx_sha256 != current:
            reasons.append(f"{record.key}: built from an older {source}")
            continue
        if here is not None:
            problem = compatibility_problem(spec.env, spec.options.hardware_compatibility, here)
            if problem:
                reasons.append(f"{record.key}: {problem}")
                continue
        usable.append(record)
    if not usable:
        detail = f" ({'; '.join(reasons)})" if reasons else ""
        raise BninceptionError(f"{run.root}: no usable {precision} TensorRT engine{detail}; run "
                               f"`bninception build-engine --run {run.root} --precision {precision}`")
    recorded = run.manifest()["stages"].get(stage_name(precision), {}).get("outputs", {})
    usable.sort(key=lambda r: (f"{ENGINES_DIR}/{r.key}.plan" not in recorded, r.key))
    return usable[0]

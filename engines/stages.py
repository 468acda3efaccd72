"""The ``build-engine`` stage: one TensorRT engine per precision, reused by key, recorded in the manifest.

Outputs ``engines/<key>.plan``, ``<key>.json`` and ``<key>.ctx.onnx``. Reuse, cheapest first (none
with ``force``): a fresh manifest record; an intact pair already in the run; the pair in the engine
cache; otherwise a build, which is copied into the cache.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bninception.core.errors import BninceptionError
from bninception.core.files import sha256_bytes
from bninception.core.layout import (
    ENGINES_DIR,
    PRECISION_FILES,
    context_model_name,
    make_hint,
    plan_name,
    sidecar_name,
)
from bninception.core.rundir import RunDir
from bninception.core.stage import Done, StageResult, StageSpec, run_stage
from bninception.engines.detect import HostEnv, host_env
from bninception.engines.epcontext import write_context_model
from bninception.engines.key import (
    BuildOptions,
    EngineSpec,
    Sidecar,
    compatibility_problem,
    stage_name,
)
from bninception.engines.profile import BatchProfile, OnnxInput, profile_shapes, read_onnx_input
from bninception.engines.store import (
    cache_dir,
    fetch_from_cache,
    read_plan,
    read_sidecar,
    store_in_cache,
    write_engine,
)

log = logging.getLogger(__name__)

# (onnx path, spec, onnx input, timing cache path) -> (plan bytes, policy)
PlanBuilder = Callable[[Path, EngineSpec, OnnxInput, Path | None], tuple[bytes, dict[str, Any]]]

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


def _build(run: RunDir, spec: EngineSpec, source_path: Path, builder: PlanBuilder | None, start: float
           ) -> tuple[Sidecar, bytes]:
    """Compile the plan for ``spec`` (checks the source first) and describe it in a sidecar."""
    onnx_input = read_onnx_input(source_path)
    _check_source(onnx_input, source_path)
    profile_shapes(onnx_input.shape, spec.profile, onnx_input.name)  # fail before TensorRT does
    log.info("stage %s: building %s from %s (%s)", stage_name(spec.precision), spec.key(), source_path.name,
             spec.env.describe())
    if builder is None:
        from bninception.engines.build import build_plan

        builder = build_plan
    plan, policy = builder(source_path, spec, onnx_input, run.path(timing_cache_name(spec.env)))
    if not plan:
        raise BninceptionError(f"the TensorRT builder returned an empty plan for {source_path.name}")
    sidecar = Sidecar(key=spec.key(), spec=spec, plan_sha256=sha256_bytes(plan), plan_bytes=len(plan),
                      build_seconds=time.perf_counter() - start, built_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                      input_name=onnx_input.name,
                      input_shape=tuple(int(d) for d in onnx_input.shape[1:] if d is not None), policy=policy)
    return sidecar, plan


def build_engine_stage(run: RunDir, precision: str, min_batch: int = BatchProfile.min,
                       opt_batch: int = BatchProfile.opt, max_batch: int = BatchProfile.max,
                       workspace_gib: float = BuildOptions.workspace_gib, opt_level: int = BuildOptions.opt_level,
                       force: bool = False, hardware_compatibility: str = BuildOptions.hardware_compatibility,
                       cache: str | Path | None = None, env: HostEnv | None = None,
                       builder: PlanBuilder | None = None) -> StageResult:
    """Build (or reuse) the ``precision`` engine of ``run``; tests pass ``env`` and ``builder`` of their own."""
    if precision not in PRECISION_FILES:
        raise BninceptionError(f"precision must be one of {sorted(PRECISION_FILES)}, got {precision!r}")
    profile = BatchProfile(min_batch, opt_batch, max_batch)
    options = BuildOptions(workspace_gib, opt_level, hardware_compatibility)
    source = PRECISION_FILES[precision]
    source_path = run.require(source, make_hint(source, run.root))
    env = env if env is not None else host_env()
    unrunnable = compatibility_problem(env, hardware_compatibility, env)
    if unrunnable:  # e.g. ampere_plus on a Turing GPU: TensorRT cannot build it, and a reuse could not run
        raise BninceptionError(f"cannot build a {hardware_compatibility} engine on this host: {unrunnable}")
    spec = EngineSpec(precision, profile, run.sha256(source), env, options)
    key = spec.key()
    outputs = [plan_name(key), sidecar_name(key), context_model_name(key)]
    stage = StageSpec(stage_name(precision), stage_params(spec), [source], outputs,
                      hints={source: make_hint(source, run.root)})
    known = {"precision": precision, "key": key, "plan": str(run.path(outputs[0])),
             "sidecar": str(run.path(outputs[1])), "context_model": str(run.path(outputs[2])),
             "profile": profile.to_dict(), "host": env.describe()}

    def body() -> Done:
        start = time.perf_counter()
        engines = run.path(ENGINES_DIR)
        cache_path = cache_dir(cache)
        outcome = "built"
        sidecar = None if force else _existing_pair(run, key)
        if sidecar is not None:
            outcome = "reused"
        elif not force and cache_path is not None:
            sidecar = fetch_from_cache(cache_path, key, engines)
            outcome = "cached" if sidecar is not None else outcome
        if sidecar is None:
            sidecar, plan = _build(run, spec, source_path, builder, start)
            write_engine(engines, sidecar, plan)
            if cache_path is not None:
                store_in_cache(cache_path, key, engines)
        write_context_model(run.path(outputs[2]), sidecar, source_path)  # derived from the sidecar: cheap
        return Done({"engine": outcome, "plan_bytes": sidecar.plan_bytes, "build_seconds": sidecar.build_seconds},
                    message=f"{outcome} {outputs[0]}")

    return run_stage(run, stage, body, force=force, known=known)

"""Run-directory stages: ``fp16`` (-> model.fp16.onnx) and ``int8`` (-> model.int8.onnx + calibration.json).

Both read ``model.folded.onnx``, skip themselves when their manifest record is fresh, compare the
result with the FP32 folded model on ONNX Runtime CPU (the run's test split, or photo crops when
the run has no dataset) and gate on it.

Gate failure: the artifact is written beside, as ``model.<precision>.rejected.onnx`` (with its
report), so it can be inspected, while the file that later stages consume keeps its last
passing version (or stays absent); the stage is not recorded and ``GateFailure`` is raised.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from bninception.core.errors import BninceptionError, GateFailure
from bninception.core.files import atomic_path, atomic_write_json
from bninception.core.rundir import RunDir
from bninception.export.to_onnx import read_preprocess

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import onnx

    from bninception.calibrate.evaluate import Comparison

FOLDED = "model.folded.onnx"
CPU_INT8 = "model.int8.cpu.onnx"
FP16_PASS = "fp16/1"
INT8_PASS = "qdq-trt-symmetric/1"
FP16_MIN_AGREEMENT = 0.995
INT8_MIN_AGREEMENT = 0.99
INT8_MAX_DROP_POINTS = 0.5
DEFAULT_METHOD = "percentile"
DEFAULT_SAMPLES = 512
DEFAULT_PERCENTILE = 99.99
FP16_PROBE_SAMPLES = 128  # training images used to measure activation magnitudes for FP16


def calibration_reader(bundle: Any, model: onnx.ModelProto, samples: int, seed: int = 0) -> Any:
    """The run's training split (no augmentation), or photo crops for runs without a dataset."""
    from bninception.calibrate.data import CalibrationReader, PhotoCrops

    if bundle is not None:
        return CalibrationReader(bundle.train, samples, seed=seed, source=f"{bundle.name} train split")
    preprocess = read_preprocess(model, FOLDED)
    if preprocess is None:
        raise BninceptionError("the run records no dataset and the model has no preprocessing metadata: "
                               "no calibration images")
    return CalibrationReader(PhotoCrops(preprocess, samples, seed=seed), samples, seed=seed,
                             source="scikit-image photo crops")


def float_tensors(model: onnx.ModelProto) -> list[str]:
    """Graph inputs and node outputs of type float32 (shape inference decides)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.output, *graph.value_info]}
    inits = {init.name for init in graph.initializer}
    names = [v.name for v in graph.input if v.name not in inits]
    names += [out for node in graph.node for out in node.output if out]
    return [n for n in names if types.get(n) == onnx.TensorProto.FLOAT]


def _gate_text(what: str, cmp: Comparison, min_agreement: float, max_drop: float | None) -> str | None:
    problems = []
    if not cmp.top1_agreement >= min_agreement:
        problems.append(f"top-1 agreement {100 * cmp.top1_agreement:.2f}% < {100 * min_agreement:.1f}%")
    if max_drop is not None and cmp.accuracy_drop_points is not None and not cmp.accuracy_drop_points <= max_drop:
        problems.append(f"accuracy drop {cmp.accuracy_drop_points:.2f} points > {max_drop} points")
    if not np.isfinite(cmp.max_abs_diff):
        problems.append("non-finite logits")
    return f"{what}: {'; '.join(problems)} ({cmp.source})" if problems else None


def _write_model(run: RunDir, name: str, model: onnx.ModelProto) -> None:
    from bninception.export.onnx_io import check_full

    check_full(model, name)
    with atomic_path(run.path(name)) as tmp:
        tmp.write_bytes(model.SerializeToString())


def _rejected(name: str) -> str:
    stem, dot, ext = name.rpartition(".")
    return f"{stem}.rejected.{ext}" if dot else f"{name}.rejected"


# -- FP16 ----------------------------------------------------------------------------------------
def fp16_stage(run: RunDir, keep_fp32_ops: list[str] | tuple[str, ...] | None = None,
               force: bool = False) -> dict[str, Any]:
    """model.folded.onnx -> model.fp16.onnx + fp16_report.json; gate: top-1 agreement >= 99.5%."""
    from bninception.calibrate.evaluate import compare, evaluation_set, run_models
    from bninception.calibrate.fp16 import DEFAULT_KEEP_FP32_OPS, FP16_HEADROOM, convert_fp16
    from bninception.calibrate.ranges import collect
    from bninception.export.onnx_io import load_onnx
    from bninception.model.data import load_run_bundle

    keep = tuple(DEFAULT_KEEP_FP32_OPS if keep_fp32_ops is None else keep_fp32_ops)
    params = {"pass": FP16_PASS, "keep_fp32_ops": sorted(keep), "headroom": FP16_HEADROOM,
              "min_agreement": FP16_MIN_AGREEMENT, "probe_samples": FP16_PROBE_SAMPLES}
    inputs, outputs = [FOLDED], ["model.fp16.onnx", "fp16_report.json"]
    source = run.require(FOLDED, "run `bninception fold` first")
    if not force and run.is_fresh("fp16", params, inputs, outputs):
        log.info("stage fp16: up to date, skipped")
        return {"stage": "fp16", "skipped": True}
    start = time.perf_counter()
    model = load_onnx(source)
    bundle = load_run_bundle(run)
    reader = calibration_reader(bundle, model, FP16_PROBE_SAMPLES)
    magnitudes = collect(model, float_tensors(model), lambda: iter(reader), histograms=False).amax
    fp16, report = convert_fp16(model, keep_fp32_ops=keep, activation_amax=magnitudes)
    evalset = evaluation_set(bundle, read_preprocess(model, FOLDED))
    out, labels = run_models({"fp32": model, "fp16": fp16}, evalset)
    cmp = compare(out["fp32"], out["fp16"], labels, evalset.source)
    for entry in report.out_of_range_weights:
        log.info(f"fp16: weight {entry['tensor']}: {entry['count']} value(s) beyond the FP16 range "
             f"(max |w| {entry['max_abs']:.4g}); its node is kept in FP32")
    failure = _gate_text("FP16 gate", cmp, FP16_MIN_AGREEMENT, None)
    payload = {"stage": "fp16", "passed": failure is None, "comparison": cmp.to_dict(),
               "conversion": report.to_dict(), "max_activation_fp32": max(magnitudes.values(), default=0.0),
               "params": params}
    names = outputs if failure is None else [_rejected(n) for n in outputs]
    _write_model(run, names[0], fp16)
    atomic_write_json(run.path(names[1]), payload)
    if failure is not None:
        raise GateFailure(f"{failure}; the model was written to {run.path(names[0])} for inspection")
    seconds = time.perf_counter() - start
    run.record("fp16", params, inputs, outputs, seconds)
    log.info(f"stage fp16: model.fp16.onnx ({report.converted_nodes} nodes FP16, {len(report.kept_nodes)} "
         f"kept FP32); top-1 agreement {100 * cmp.top1_agreement:.2f}%, max abs logit diff "
         f"{cmp.max_abs_diff:.3g} on {cmp.source}")
    return {"stage": "fp16", "skipped": False, **cmp.to_dict(), "kept_fp32": report.kept_nodes,
            "out_of_range_weights": report.out_of_range_weights, "seconds": round(seconds, 3)}


# -- INT8 ----------------------------------------------------------------------------------------
def calibrate(bundle: Any, model: onnx.ModelProto, model_sha256: str, method: str, samples: int,
              percentile: float) -> Any:
    """Collect statistics over the calibration reader and return a ``Calibration``."""
    from bninception.calibrate.cache import Calibration
    from bninception.calibrate.ranges import BINS, collect, compute_amax

    reader = calibration_reader(bundle, model, samples)
    names = float_tensors(model)
    stats = collect(model, names, lambda: iter(reader), histograms=method != "minmax")
    inputs = [value.name for value in model.graph.input]
    amax = compute_amax(stats, method, percentile, keep_max=inputs)
    return Calibration(method=method, percentile=percentile if method == "percentile" else None,
                       samples=stats.samples, bins=BINS if method != "minmax" else 0,
                       model_sha256=model_sha256, data_sha256=reader.sha256 or "",
                       data_source=reader.source, amax=amax, minmax=stats.amax, minimum=stats.amin)


def int8_stage(run: RunDir, method: str | None = DEFAULT_METHOD, samples: int = DEFAULT_SAMPLES,
               percentile: float = DEFAULT_PERCENTILE, from_cache: bool = False,
               force: bool = False) -> dict[str, Any]:
    """model.folded.onnx -> model.int8.onnx (TensorRT Q/DQ) + calibration.json + int8_report.json, and
    model.int8.cpu.onnx (the ONNX Runtime CPU variant, see ``ort_cpu``) when it passes the gate too.

    Gates (on model.int8.onnx): top-1 agreement >= 99%, accuracy drop <= 0.5 points.

    ``method=None``: the cached method with ``from_cache``, else ``percentile``.
    """
    from bninception.calibrate.cache import load_calibration
    from bninception.calibrate.evaluate import compare, evaluation_set, run_models
    from bninception.calibrate.ort_cpu import ort_cpu_int8
    from bninception.calibrate.qdq import check_trt_layout, insert_qdq
    from bninception.calibrate.ranges import METHODS
    from bninception.export.onnx_io import load_onnx
    from bninception.model.data import load_run_bundle

    source = run.require(FOLDED, "run `bninception fold` first")
    model_sha = run.sha256(FOLDED)
    cached = load_calibration(run.path("calibration.json"), model_sha) if from_cache else None
    if cached is not None:
        if method is not None and method != cached.method:
            raise BninceptionError(f"--from-cache: calibration.json holds {cached.method!r} ranges, not "
                                   f"{method!r}; drop --method or recalibrate without --from-cache")
        method, samples = cached.method, cached.samples
        percentile = cached.percentile if cached.percentile is not None else percentile
    method = method or DEFAULT_METHOD
    if method not in METHODS:
        raise BninceptionError(f"--method must be one of {METHODS}, got {method!r}")
    params = {"pass": INT8_PASS, "method": method, "samples": samples,
              "percentile": percentile if method == "percentile" else None,
              "min_agreement": INT8_MIN_AGREEMENT, "max_drop_points": INT8_MAX_DROP_POINTS}
    inputs = [FOLDED]
    outputs = ["model.int8.onnx", "calibration.json", "int8_report.json"]
    if not force and any(run.is_fresh("int8", params, inputs, outs) for outs in (outputs, [*outputs, CPU_INT8])):
        log.info("stage int8: up to date, skipped")
        return {"stage": "int8", "skipped": True}
    start = time.perf_counter()
    model = load_onnx(source)
    bundle = load_run_bundle(run)
    calib = cached or calibrate(bundle, model, model_sha, method, samples, percentile)
    qdq, qdq_report = insert_qdq(model, calib.amax)
    problems = check_trt_layout(qdq)
    if problems:
        raise BninceptionError(f"INT8 Q/DQ layout breaks TensorRT rules: {problems[:3]}")
    cpu = ort_cpu_int8(model, calib.minmax, calib.minimum)  # observed max: see ort_cpu's docstring
    evalset = evaluation_set(bundle, read_preprocess(model, FOLDED))
    out, labels = run_models({"fp32": model, "int8": qdq, "cpu": cpu}, evalset)
    cmp = compare(out["fp32"], out["int8"], labels, evalset.source)
    cmp_cpu = compare(out["fp32"], out["cpu"], labels, evalset.source)
    failure = _gate_text("INT8 gate (model.int8.onnx)", cmp, INT8_MIN_AGREEMENT, INT8_MAX_DROP_POINTS)
    cpu_failure = _gate_text("INT8 gate (model.int8.cpu.onnx)", cmp_cpu, INT8_MIN_AGREEMENT,
                             INT8_MAX_DROP_POINTS)
    payload = {"stage": "int8", "passed": failure is None, "method": method, "comparison": cmp.to_dict(),
               "cpu_variant": {"passed": cpu_failure is None, "comparison": cmp_cpu.to_dict()},
               "qdq": qdq_report.to_dict(), "from_cache": cached is not None,
               "calibration": {"samples": calib.samples, "data_source": calib.data_source,
                               "data_sha256": calib.data_sha256}, "params": params}
    names = outputs if failure is None else [_rejected(n) for n in outputs]
    _write_model(run, names[0], qdq)
    cpu_name = CPU_INT8 if failure is None and cpu_failure is None else _rejected(CPU_INT8)
    _write_model(run, cpu_name, cpu)
    if cached is None or failure is not None:
        atomic_write_json(run.path(names[1]), calib.to_json())
    atomic_write_json(run.path(names[2]), payload)
    if failure is not None:
        raise GateFailure(f"{failure}; the model was written to {run.path(names[0])} for inspection")
    if cpu_failure is not None:
        log.info(f"warning: {cpu_failure}: written as {cpu_name} for inspection only (model.int8.onnx passed)")
        if run.path(CPU_INT8).is_file():
            run.path(CPU_INT8).unlink()  # a stale CPU variant from an earlier calibration must not stay
    else:
        outputs.append(CPU_INT8)
    seconds = time.perf_counter() - start
    run.record("int8", params, inputs, outputs, seconds)
    log.info(f"stage int8 ({method}, {calib.samples} images): model.int8.onnx top-1 agreement "
         f"{100 * cmp.top1_agreement:.2f}%, accuracy drop {cmp.accuracy_drop_points} points; "
         f"model.int8.cpu.onnx agreement {100 * cmp_cpu.top1_agreement:.2f}% on {cmp.source}")
    return {"stage": "int8", "skipped": False, "method": method, "calibration_samples": calib.samples,
            "from_cache": cached is not None, **cmp.to_dict(),
            "cpu_variant": {"written": cpu_failure is None, **cmp_cpu.to_dict()},
            "seconds": round(seconds, 3)}

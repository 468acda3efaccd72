"""Run-directory stages ``fp16`` and ``int8``: each gated against ``model.folded.onnx`` on ONNX Runtime CPU.

A failed gate writes ``model.<precision>.rejected.onnx``, keeps the last passing file, records
nothing and raises ``GateFailure``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bninception.calibrate.ranges import METHODS
from bninception.core import layout, metadata
from bninception.core.errors import BninceptionError, GateFailure
from bninception.core.files import atomic_path, atomic_write_json
from bninception.core.gates import GATES, compare
from bninception.core.rundir import RunDir
from bninception.core.stage import Done, StageResult, StageSpec, run_stage

log = logging.getLogger("bninception.stage")

if TYPE_CHECKING:
    import onnx

    from bninception.calibrate.cache import Calibration

FP16_PASS = "fp16/2"  # 2: ONNX Runtime's float16 converter
INT8_PASS = "qdq-trt-symmetric/2"  # /2: the CPU layout's 7-bit weights
ADOPT_PASS = "adopted/1"
DEFAULT_METHOD = "percentile"
DEFAULT_SAMPLES = 512
DEFAULT_PERCENTILE = 99.99
FP16_PROBE_SAMPLES = 128  # training images used to measure activation magnitudes for FP16
FOLDED_HINT = {layout.FOLDED: layout.make_hint(layout.FOLDED)}


def calibration_reader(bundle: Any, model: onnx.ModelProto, samples: int, seed: int = 0) -> Any:
    """``samples`` images of the run's training split (no augmentation), or photo crops for runs without one."""
    from bninception.calibrate.data import calibration_subset
    from bninception.model.data import run_images

    preprocess = None if bundle is not None else metadata.read(model, layout.FOLDED).preprocess
    data, source = run_images(bundle, "train", preprocess, samples, seed)
    return calibration_subset(data, samples, seed, source)


def float_tensors(model: onnx.ModelProto) -> list[str]:
    """Graph inputs and node outputs of type float32 (shape inference decides)."""
    import onnx

    from bninception.export.graph import tensor_types

    types = tensor_types(model)
    inits = {init.name for init in model.graph.initializer}
    names = [v.name for v in model.graph.input if v.name not in inits]
    names += [out for node in model.graph.node for out in node.output if out]
    return [n for n in names if types.get(n) == onnx.TensorProto.FLOAT]


def _write_model(run: RunDir, name: str, model: onnx.ModelProto) -> None:
    from bninception.export.onnx_io import check_full

    check_full(model, name)
    with atomic_path(run.path(name)) as tmp:
        tmp.write_bytes(model.SerializeToString())
    if name in (layout.FP16, layout.INT8, layout.INT8_CPU):
        run.path(layout.rejected(name)).unlink(missing_ok=True)  # a passing file replaces a rejected one


def _evaluate(run: RunDir, model: onnx.ModelProto, candidates: dict[str, onnx.ModelProto], bundle: Any
              ) -> dict[str, Any]:
    """Comparison of each candidate with the FP32 folded ``model`` on the evaluation set."""
    from bninception.calibrate.evaluate import evaluation_set, run_models

    images = evaluation_set(bundle, metadata.read(model, layout.FOLDED).preprocess)
    out, labels = run_models({"fp32": model, **candidates}, images)
    return {name: compare(out["fp32"], out[name], images.source, labels) for name in candidates}


# -- FP16 ----------------------------------------------------------------------------------------
def fp16_stage(run: RunDir, keep_fp32_ops: list[str] | tuple[str, ...] | None = None,
               force: bool = False) -> StageResult:
    """model.folded.onnx -> model.fp16.onnx + fp16_report.json, through the FP16 gate."""
    from bninception.calibrate.fp16 import DEFAULT_KEEP_FP32_OPS, FP16_HEADROOM

    keep = tuple(DEFAULT_KEEP_FP32_OPS if keep_fp32_ops is None else keep_fp32_ops)
    gate = GATES["fp16"]
    params = {"pass": FP16_PASS, "keep_fp32_ops": sorted(keep), "headroom": FP16_HEADROOM,
              "gate": gate.describe(), "probe_samples": FP16_PROBE_SAMPLES}
    spec = StageSpec("fp16", params, [layout.FOLDED], [layout.FP16, layout.FP16_REPORT], hints=FOLDED_HINT)

    def body() -> Done:
        from bninception.calibrate.fp16 import convert_fp16
        from bninception.calibrate.ranges import collect
        from bninception.export.onnx_io import load_onnx
        from bninception.model.data import load_run_bundle

        model = load_onnx(run.path(layout.FOLDED))
        bundle = load_run_bundle(run)
        reader = calibration_reader(bundle, model, FP16_PROBE_SAMPLES)
        magnitudes = collect(model, float_tensors(model), lambda: iter(reader), histograms=False).amax
        fp16, report = convert_fp16(model, keep_fp32_ops=keep, activation_amax=magnitudes)
        cmp = _evaluate(run, model, {"fp16": fp16}, bundle)["fp16"]
        failures = gate.failures(cmp)
        payload = {"stage": "fp16", "passed": not failures, "comparison": cmp.to_dict(),
                   "conversion": report.to_dict(), "max_activation_fp32": max(magnitudes.values(), default=0.0),
                   "params": params}
        names = spec.outputs if not failures else [layout.rejected(n) for n in spec.outputs]
        _write_model(run, names[0], fp16)
        atomic_write_json(run.path(names[1]), payload)
        if failures:
            raise GateFailure(f"FP16 gate: {'; '.join(failures)} ({cmp.source}); the model was written to "
                              f"{run.path(names[0])} for inspection")
        notes = "".join(f"\n  weight {e['tensor']}: {e['count']} value(s) beyond the FP16 range (max |w| "
                        f"{e['max_abs']:.4g}); its node is kept in FP32" for e in report.out_of_range_weights)
        return Done({**cmp.to_dict(), "kept_fp32": report.kept_nodes,
                     "out_of_range_weights": report.out_of_range_weights},
                    message=f"model.fp16.onnx ({report.converted_nodes} nodes FP16, {len(report.kept_nodes)} kept "
                            f"FP32); top-1 agreement {100 * cmp.top1_agreement:.2f}%, max abs logit diff "
                            f"{cmp.max_abs_diff:.3g} on {cmp.source}{notes}")

    return run_stage(run, spec, body, force=force)


# -- INT8 ----------------------------------------------------------------------------------------
def calibrate(bundle: Any, model: onnx.ModelProto, model_sha256: str, method: str, samples: int,
              percentile: float) -> Any:
    """Collect statistics over the calibration reader and return a ``Calibration``."""
    from bninception.calibrate.cache import Calibration
    from bninception.calibrate.ranges import BINS, collect, compute_amax

    reader = calibration_reader(bundle, model, samples)
    stats = collect(model, float_tensors(model), lambda: iter(reader), histograms=method != "minmax")
    inputs = [value.name for value in model.graph.input]
    amax = compute_amax(stats, method, percentile, keep_max=inputs)
    return Calibration(method=method, percentile=percentile if method == "percentile" else None,
                       samples=stats.samples, bins=BINS if method != "minmax" else 0,
                       model_sha256=model_sha256, data_sha256=reader.sha256 or "",
                       data_source=reader.source, amax=amax, minmax=stats.amax, minimum=stats.amin)


def _cached_calibration(run: RunDir, model_sha: str) -> Any:
    """``calibration.json`` for ``--from-cache``: our own file, trusted by the sha256 its stage recorded."""
    from bninception.calibrate.cache import load_calibration

    if run.path(layout.CALIBRATION).is_file():
        run.verified(layout.CALIBRATION)
    return load_calibration(run.path(layout.CALIBRATION), model_sha)


def _resolve_method(run: RunDir, model_sha: str, method: str | None, samples: int, percentile: float,
                    from_cache: bool) -> tuple[Calibration | None, str, int, float]:
    """The cached calibration (``--from-cache``) and the method, samples and percentile the stage uses."""
    cached = _cached_calibration(run, model_sha) if from_cache else None
    if cached is not None:
        if method is not None and method != cached.method:
            raise BninceptionError(f"--from-cache: calibration.json holds {cached.method!r} ranges, not "
                                   f"{method!r}; drop --method or recalibrate without --from-cache")
        method, samples = cached.method, cached.samples
        percentile = cached.percentile if cached.percentile is not None else percentile
    method = method or DEFAULT_METHOD
    if method not in METHODS:
        raise BninceptionError(f"--method must be one of {METHODS}, got {method!r}")
    return cached, method, samples, percentile


def _kept_adoption(run: RunDir, force: bool) -> StageResult | None:
    """A skipped result when model.int8.onnx was adopted (``--from``) and is still fresh; None otherwise."""
    adopted = run.manifest()["stages"].get("int8")
    if force or adopted is None or adopted["params"].get("pass") != ADOPT_PASS or not run.is_fresh(
            "int8", adopted["params"], [layout.FOLDED], [layout.INT8, layout.INT8_REPORT]):
        return None
    log.info("stage int8: model.int8.onnx was adopted from %s; kept (--force recalibrates)", adopted["params"]["from"])
    return StageResult("int8", "skipped", 0.0, {"adopted_from": adopted["params"]["from"]})


def _quantized(model: onnx.ModelProto, calib: Calibration) -> tuple[onnx.ModelProto, onnx.ModelProto, Any]:
    """Both INT8 files of one calibration (TensorRT layout, CPU layout), and the TensorRT layout's check."""
    from bninception.calibrate.qdq import CPU, TENSORRT, check_trt_layout, cpu_ranges, quantize, symmetric

    qdq = quantize(model, symmetric(calib.amax), TENSORRT)
    check = check_trt_layout(qdq)
    if check.errors:
        raise BninceptionError(f"INT8 Q/DQ layout breaks TensorRT rules: {[str(e) for e in check.errors[:3]]}")
    return qdq, quantize(model, cpu_ranges(calib.minmax, calib.minimum), CPU), check


def _gate_and_write(run: RunDir, spec: StageSpec, calib: Calibration, cached: bool, models: dict[str, Any],
                    check: Any, bundle: Any) -> Done:
    """Both files through the INT8 gate; written (a failed one as ``*.rejected.onnx``) with the report."""
    from bninception.calibrate.qdq import qdq_summary

    gate, method = GATES["int8"], spec.params["method"]
    cmps = _evaluate(run, models["model"], {"int8": models["int8"], "cpu": models["cpu"]}, bundle)
    failures, cpu_failures = gate.failures(cmps["int8"]), gate.failures(cmps["cpu"])
    cmp, cmp_cpu = cmps["int8"], cmps["cpu"]
    payload = {"stage": "int8", "passed": not failures, "method": method, "comparison": cmp.to_dict(),
               "cpu_variant": {"passed": not cpu_failures, "comparison": cmp_cpu.to_dict()},
               "qdq": qdq_summary(models["int8"]), "layout": check.to_dict(), "from_cache": cached,
               "calibration": {"samples": calib.samples, "data_source": calib.data_source,
                               "data_sha256": calib.data_sha256}, "params": spec.params}
    names = spec.outputs if not failures else [layout.rejected(n) for n in spec.outputs]
    _write_model(run, names[0], models["int8"])
    cpu_name = layout.INT8_CPU if not failures and not cpu_failures else layout.rejected(layout.INT8_CPU)
    _write_model(run, cpu_name, models["cpu"])
    if not cached or failures:
        atomic_write_json(run.path(names[1]), calib.to_json())
    atomic_write_json(run.path(names[2]), payload)
    if failures:
        raise GateFailure(f"INT8 gate (model.int8.onnx): {'; '.join(failures)} ({cmp.source}); "
                          f"the model was written to {run.path(names[0])} for inspection")
    note = ""
    if cpu_failures:
        note = (f"\n  warning: INT8 gate (model.int8.cpu.onnx): {'; '.join(cpu_failures)}: written as "
                f"{cpu_name} for inspection only (model.int8.onnx passed)")
        run.path(layout.INT8_CPU).unlink(missing_ok=True)  # a stale CPU variant must not stay
    return Done({"method": method, "calibration_samples": calib.samples, "from_cache": cached,
                 **cmp.to_dict(), "cpu_variant": {"written": not cpu_failures, **cmp_cpu.to_dict()}},
                message=f"{method}, {calib.samples} images: model.int8.onnx top-1 agreement "
                        f"{100 * cmp.top1_agreement:.2f}%, accuracy drop {cmp.accuracy_drop_points} points; "
                        f"model.int8.cpu.onnx agreement {100 * cmp_cpu.top1_agreement:.2f}% on {cmp.source}{note}")


def int8_stage(run: RunDir, method: str | None = DEFAULT_METHOD, samples: int = DEFAULT_SAMPLES,
               percentile: float = DEFAULT_PERCENTILE, from_cache: bool = False,
               force: bool = False) -> StageResult:
    """model.folded.onnx -> model.int8.onnx (TensorRT layout) + calibration.json, and model.int8.cpu.onnx
    when it passes the gate too; ``method=None``: the cached method with ``from_cache``, else percentile.
    """
    run.require(layout.FOLDED, FOLDED_HINT[layout.FOLDED])
    model_sha = run.sha256(layout.FOLDED)
    cached, method, samples, percentile = _resolve_method(run, model_sha, method, samples, percentile, from_cache)
    kept = _kept_adoption(run, force)
    if kept is not None:
        return kept
    params = {"pass": INT8_PASS, "method": method, "samples": samples,
              "percentile": percentile if method == "percentile" else None, "gate": GATES["int8"].describe()}
    spec = StageSpec("int8", params, [layout.FOLDED], [layout.INT8, layout.CALIBRATION, layout.INT8_REPORT],
                     optional_outputs=(layout.INT8_CPU,), hints=FOLDED_HINT)

    def body() -> Done:
        from bninception.export.onnx_io import load_onnx
        from bninception.model.data import load_run_bundle

        model = load_onnx(run.path(layout.FOLDED))
        bundle = load_run_bundle(run)
        calib = cached or calibrate(bundle, model, model_sha, method, samples, percentile)
        qdq, cpu, check = _quantized(model, calib)
        return _gate_and_write(run, spec, calib, cached is not None, {"model": model, "int8": qdq, "cpu": cpu},
                               check, bundle)

    return run_stage(run, spec, body, force=force)


# -- adopting an INT8 model quantized elsewhere ----------------------------------------------------
def _io_signature(model: onnx.ModelProto, which: str) -> list[tuple[str, int, list[int | str]]]:
    inits = {init.name for init in model.graph.initializer}
    values = model.graph.input if which == "input" else model.graph.output
    out = []
    for value in values:
        if value.name in inits:
            continue
        tensor = value.type.tensor_type
        dims: list[int | str] = [d.dim_value if d.HasField("dim_value") else "?" for d in tensor.shape.dim]
        out.append((value.name, tensor.elem_type, dims))
    return out


def check_adoptable(candidate: onnx.ModelProto, reference: onnx.ModelProto, source: str) -> None:
    """One clear error when ``candidate`` cannot stand in for the run's INT8 model: not a Q/DQ model,
    an opset without per-axis Q/DQ, other inputs or outputs than the run's ``reference``."""
    import onnx

    from bninception.calibrate.graph import QDQ_OPSET_RANGE
    from bninception.export.graph import DEFAULT_DOMAINS, default_opset

    if not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.domain in DEFAULT_DOMAINS
               for n in candidate.graph.node):
        raise BninceptionError(f"{source} is not a Q/DQ model (no QuantizeLinear/DequantizeLinear nodes); "
                               "quantize it first, or let `bninception calibrate --precision int8` do it")
    opset = default_opset(candidate)
    if opset < QDQ_OPSET_RANGE[0]:
        raise BninceptionError(f"{source} has opset {opset}; explicit per-channel Q/DQ needs opset >= "
                               f"{QDQ_OPSET_RANGE[0]}: re-export it with a newer opset")
    for which in ("input", "output"):
        theirs, ours = _io_signature(candidate, which), _io_signature(reference, which)
        if theirs != ours:
            def show(sig: list[tuple[str, int, list[int | str]]]) -> str:
                return ", ".join(f"{n!r} {onnx.TensorProto.DataType.Name(t).lower()}{d}" for n, t, d in sig)

            raise BninceptionError(f"{source} has {which}s {show(theirs)}; the run's {layout.FOLDED} has "
                                   f"{show(ours)}: it is not a quantization of this run's model")


def adopt_int8_stage(run: RunDir, source: str | Path, force: bool = False) -> StageResult:
    """An INT8 Q/DQ model quantized elsewhere (ModelOpt, QAT) -> the run's model.int8.onnx, checked and gated.

    The run's CPU-layout file is removed so every provider serves the adopted model; a failed check
    changes nothing.
    """
    from bninception.core.files import sha256_bytes
    from bninception.export.onnx_io import MAX_ONNX_BYTES, parse_onnx

    path = Path(source)
    if not path.is_file():
        raise BninceptionError(f"--from {path}: no such file")
    if path.stat().st_size > MAX_ONNX_BYTES:
        raise BninceptionError(f"--from {path}: over the 2 GiB single-file ONNX limit")
    data = path.read_bytes()
    digest = sha256_bytes(data)
    gate = GATES["int8"]
    params = {"pass": ADOPT_PASS, "from": str(path.resolve()), "source_sha256": digest, "gate": gate.describe()}
    spec = StageSpec("int8", params, [layout.FOLDED], [layout.INT8, layout.INT8_REPORT], hints=FOLDED_HINT)

    def body() -> Done:
        from bninception.calibrate.qdq import check_trt_layout, qdq_summary
        from bninception.export.onnx_io import load_onnx
        from bninception.model.data import load_run_bundle

        candidate = parse_onnx(data, str(path))
        reference = load_onnx(run.path(layout.FOLDED))
        check_adoptable(candidate, reference, str(path))
        check = check_trt_layout(candidate)
        if check.errors:
            shown = "; ".join(str(e) for e in check.errors[:3])
            raise BninceptionError(f"{path} breaks {len(check.errors)} TensorRT explicit-quantization rule(s), "
                                   f"e.g. {shown} (see {check.errors[0].rule})")
        if not metadata.props(candidate):
            metadata.write(candidate, metadata.props(reference))  # preprocessing and labels for serve
        cmp = _evaluate(run, reference, {"int8": candidate}, load_run_bundle(run))["int8"]
        gate.check(cmp, f"INT8 gate ({path})")
        _write_model(run, layout.INT8, candidate)
        run.path(layout.INT8_CPU).unlink(missing_ok=True)  # made from our calibration, not this model
        summary = qdq_summary(candidate)
        atomic_write_json(run.path(layout.INT8_REPORT), {
            "stage": "int8", "passed": True, "adopted": {"from": str(path), "sha256": digest},
            "comparison": cmp.to_dict(), "layout": check.to_dict(), "qdq": summary, "params": params})
        return Done({"adopted_from": str(path), "sha256": digest, **cmp.to_dict(),
                     "layout_warnings": len(check.warnings)},
                    message=f"adopted {path} as model.int8.onnx ({summary['quantized_ops']} of "
                            f"{summary['weighted_ops']} weighted ops in INT8, {len(check.warnings)} placement "
                            f"warning(s)); top-1 agreement {100 * cmp.top1_agreement:.2f}%, accuracy drop "
                            f"{cmp.accuracy_drop_points} points on {cmp.source}")

    return run_stage(run, spec, body, force=force)

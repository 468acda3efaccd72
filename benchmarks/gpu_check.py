"""GPU check: everything this project can verify on one CUDA host, bounded (< 10 min), one-screen summary + JSON.

Steps (each PASS / FAIL / SKIP with the reason / ERROR; a failing step never stops the next):

1. environment   torch + CUDA device, TensorRT (``tensorrt.Builder``; a broken install is an ERROR),
                 ONNX Runtime and its providers
2. pipeline      ``bninception.pipeline.run_pipeline``, the demo recipe on the device: train, population,
                 export, fold, FP16, INT8, engines (needs TensorRT), validate, bench, report
3. torch-parity  model.pt on CUDA (TF32 off) vs CPU on the test split, docs/DESIGN.md's FP32 gate
4. autocast      model.pt under FP16 autocast on CUDA vs FP32 on the CPU, docs/DESIGN.md's FP16 gate
5. population    Algorithm 2 statistics computed on CUDA vs on CPU from the same checkpoint
6. torch-speed   PyTorch BN-Inception 224 (full width) at batch 1 / 32 / 256, FP32 (TF32 off) and FP16,
                 channels-last, eager and torch.compile while the budget lasts: images/s and peak
                 GPU memory (the anchors TensorRT engines must beat)
7. engines       the pipeline's engine builds, and the run's engines classified usable / stale / foreign /
                 broken for this host
8. validate      the pipeline's validate report: every artifact, engines and their ``<key>.ctx.onnx`` on
                 ONNX Runtime's TensorRT provider included
9. bench         the pipeline's bench report at batch 1, 8, 32 (short timings)

Runs from a plain checkout, nothing installed: ``python3 benchmarks/gpu_check.py`` needs only torch,
numpy, onnx, onnxruntime, scikit-learn, scikit-image and Pillow (the digits ship with scikit-learn).
TensorRT and onnxruntime-gpu are optional: their steps SKIP with the reason.

    python3 benchmarks/gpu_check.py [--out runs/gpu-check] [--budget 420] [--json FILE]
    python3 benchmarks/gpu_check.py --run runs/demo          # check an existing run's model instead of training
    python3 benchmarks/gpu_check.py --device cpu --quick     # the code path without a GPU

Overall PASS (exit 0) when every step passed; PARTIAL (exit 3) when none failed but some were skipped
(the reason is on each row: it verified less than a full GPU host can); FAIL (exit 1) otherwise.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def _from_checkout() -> None:
    """Run from a plain checkout with nothing installed (a GPU host's own Python): the checkout's root
    on sys.path, and its stage folders (core/, model/, ...) as ``bninception.core``, ... as installed."""
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    if importlib.util.find_spec("bninception") is None:
        sys.path.insert(0, str(root))
    import bninception

    if importlib.util.find_spec("bninception.core") is None:
        bninception.__path__.append(str(root))


_from_checkout()

from bninception.core.files import atomic_write_text  # noqa: E402 (after the bootstrap)
from bninception.core.layout import PRECISIONS  # noqa: E402

PASS, FAIL, SKIP, ERROR, PARTIAL = "PASS", "FAIL", "SKIP", "ERROR", "PARTIAL"
EXIT = {PASS: 0, FAIL: 1, PARTIAL: 3}
POPULATION_REL_TOL = 1e-3  # CUDA vs CPU population statistics (TF32 off): float32 reduction order only


@dataclass
class Step:
    name: str
    status: str = SKIP
    seconds: float = 0.0
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Settings:
    out: Path
    device: str
    budget: float
    given_run: Path | None = None  # an existing run (e.g. runs/demo) to copy instead of training
    epochs: int = 30
    max_steps: int = 0
    population_batches: int = 16
    population_batch_size: int = 64
    int8_samples: int = 512
    validate_limit: int | None = None
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    bench_min_seconds: float = 0.2
    bench_max_seconds: float = 1.0
    speed_batches: tuple[int, ...] = (1, 32, 256)
    speed_seconds: float = 1.0


class Check:
    """Runs steps in order within a time budget; each step's exception becomes an ERROR row."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.steps: list[Step] = []
        self.started = time.perf_counter()
        self.context: dict[str, Any] = {}

    def left(self) -> float:
        return self.settings.budget - (time.perf_counter() - self.started)

    def step(self, name: str, body: Callable[[Step], None], needs: float = 0.0) -> Step:
        step = Step(name)
        self.steps.append(step)
        if self.left() < needs:
            step.detail = f"time budget: {self.left():.0f} s left of {self.settings.budget:.0f}"
            return step
        tick = time.perf_counter()
        say(f"gpu-check: {name} ...")
        try:
            step.status = PASS
            body(step)
        except Exception as exc:  # a step's failure is a row, not the end of the check
            step.status = ERROR
            step.detail = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            step.data["traceback"] = traceback.format_exc(limit=6)
        step.seconds = round(time.perf_counter() - tick, 2)
        say(f"gpu-check: {name}: {step.status} {step.detail}")
        return step


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- steps --------------------------------------------------------------------------------------------
def environment(check: Check, step: Step) -> None:
    import platform

    import torch

    from bninception.engines.detect import load_tensorrt

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, compute_capability=f"{props.major}.{props.minor}",
                    gpu_memory_gib=round(props.total_memory / 2**30, 1), gpus=torch.cuda.device_count())
    try:
        trt = load_tensorrt()
        info["tensorrt"] = getattr(trt, "__version__", None) if trt is not None else None
    except Exception as exc:  # installed but broken: an error, never "not installed"
        info["tensorrt"], info["tensorrt_error"] = None, str(exc)
    try:
        import onnxruntime as ort

        info["onnxruntime"] = ort.__version__
        info["ort_providers"] = ort.get_available_providers()
    except ImportError as exc:
        info["onnxruntime"] = None
        info["ort_error"] = str(exc)
    step.data = info
    check.context["env"] = info
    gpu = f"{info.get('gpu')} (cc {info.get('compute_capability')})" if info["cuda_available"] else "no CUDA GPU"
    step.detail = (f"{gpu}; torch {info['torch']}; TensorRT {info['tensorrt'] or '-'}; onnxruntime "
                   f"{info.get('onnxruntime') or '-'} {info.get('ort_providers', [])}")
    if check.settings.device == "cuda" and not info["cuda_available"]:
        step.status = FAIL
        step.detail = "--device cuda but torch.cuda.is_available() is False: " + step.detail
    if info.get("onnxruntime") is None:
        step.status = FAIL
    if "tensorrt_error" in info:
        step.status = ERROR
        step.detail = f"{info['tensorrt_error']}; " + step.detail


def pipeline(check: Check, step: Step) -> None:
    from bninception.core.rundir import RunDir
    from bninception.pipeline import PipelineOptions, run_pipeline

    s = check.settings
    run = RunDir(s.out / "run")
    check.context["run"] = run
    skip = {}
    if s.given_run is not None:  # its training and population statistics are kept as they are
        shutil.copytree(s.given_run, run.root, dirs_exist_ok=True)
        skip = dict.fromkeys(("train", "population"), "--run: its model is kept")
    options = PipelineOptions(epochs=s.epochs, extra_train={"max_steps": s.max_steps}, skip=skip,
                              stage_options=stage_options(s), keep_going=True,
                              force_from="validate")  # measured on this host, whatever a copied run recorded
    result = run_pipeline(run, options)
    errors = {r.stage: r.summary["error"] for r in result.results if r.status == "failed"}
    step.data = {"stages": result.statuses(), "errors": errors, "run": str(run.root),
                 "given_run": str(s.given_run) if s.given_run else None}
    accuracy = _read_json(run.path("metrics.json")).get("population", {}).get("test_accuracy_population")
    verdict = result.validation.verdict(short=True) if result.validation is not None else "not validated"
    step.detail = (f"{len(result.results)} stages, failed: {', '.join(errors) or 'none'}; validate {verdict}"
                   + (f"; test accuracy {accuracy:.4f}" if isinstance(accuracy, float) else ""))
    check.context["pipeline"] = result
    if not result.passed:
        step.status = FAIL


def stage_options(s: Settings) -> dict[str, dict[str, Any]]:
    """The pipeline's keyword arguments per stage, from the check's settings."""
    return {"train": {"progress": False},
            "population": {"batches": s.population_batches, "batch_size": s.population_batch_size},
            "int8": {"samples": s.int8_samples}, "validate": {"limit": s.validate_limit},
            "bench": {"batch_sizes": s.batch_sizes, "min_seconds": s.bench_min_seconds,
                      "max_seconds": s.bench_max_seconds, "include_unoptimized": False}}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _tf32_off() -> None:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def _test_split(run: Any, size: int, limit: int | None) -> tuple[Any, Any]:
    from bninception.model.data import load_bundle, load_run_bundle, stack_split

    bundle = load_run_bundle(run) or load_bundle("digits", image_size=size, seed=0)
    return stack_split(bundle.test, limit)


def _logits(model: Any, images: Any, device: str) -> Any:
    import torch

    model = model.to(device).eval()
    with torch.inference_mode():
        chunks = [model(torch.from_numpy(images[i:i + 64]).to(device)).float().cpu() for i in range(0, len(images), 64)]
    return torch.cat(chunks).numpy()


def _torch_gate(check: Check, step: Step, precision: str) -> None:
    """model.pt on the device (fp32: TF32 off; fp16: under autocast) against FP32 on the CPU, on the
    test split, through docs/DESIGN.md's gate of ``precision``."""
    import contextlib

    import torch

    from bninception.core.gates import GATES, compare
    from bninception.model.checkpoint import load_model

    run, device = _require_run(check), check.settings.device
    _tf32_off()
    model, pre, _labels, _ = load_model(run.path("model.pt"))
    images, labels = _test_split(run, pre.size, check.settings.validate_limit)
    reference = _logits(model, images, "cpu")
    with torch.autocast("cuda", dtype=torch.float16) if precision == "fp16" else contextlib.nullcontext():
        candidate = _logits(model, images, device)
    what = "FP16 autocast" if precision == "fp16" else device
    cmp = compare(reference, candidate, f"PyTorch {what} vs FP32 cpu, {len(images)} test images", labels)
    step.data = asdict(cmp)
    step.detail = (f"max abs diff {cmp.max_abs_diff:.2e}, agreement {cmp.top1_agreement * 100:.2f}% "
                   f"(gate {GATES[precision].describe()})")
    _judge(step, GATES[precision].failures(cmp), device)


def torch_parity(check: Check, step: Step) -> None:
    _torch_gate(check, step, "fp32")


def population_parity(check: Check, step: Step) -> None:
    from bninception.model.checkpoint import CHECKPOINT_FORMAT, load, model_from_state
    from bninception.model.config import TrainConfig
    from bninception.model.data import load_bundle
    from bninception.model.population import apply_population_statistics

    s, run = check.settings, _require_run(check)
    _tf32_off()
    path = run.path("checkpoint.pt")
    state = load(path, CHECKPOINT_FORMAT)
    cfg = TrainConfig.from_dict(state["train_config"])
    bundle = load_bundle(cfg.data, cfg.image_size, cfg.seed)
    stats = {}
    for device in ("cpu", s.device):
        model = model_from_state(state, str(path)).to(device)
        result = apply_population_statistics(model, bundle.train, batches=s.population_batches,
                                             batch_size=s.population_batch_size, seed=cfg.seed)
        stats[device] = {name: (m.detach().double().cpu(), v.detach().double().cpu())
                         for name, (m, v) in result.statistics.items()}
    worst = {"mean": (0.0, ""), "var": (0.0, "")}
    for name, (mean, var) in stats["cpu"].items():
        other_mean, other_var = stats[s.device][name]
        for what, a, b in (("mean", mean, other_mean), ("var", var, other_var)):
            rel = float((a - b).abs().max() / (a.abs().max() + 1e-12))
            if rel > worst[what][0]:
                worst[what] = (rel, name)
    step.data = {"layers": len(stats["cpu"]), "max_rel_diff": {k: {"value": v, "layer": n}
                                                             for k, (v, n) in worst.items()},
                 "tolerance": POPULATION_REL_TOL}
    where = {k: f" ({n})" if n else "" for k, (_, n) in worst.items()}
    step.detail = (f"{len(stats['cpu'])} BN layers; max relative diff mean {worst['mean'][0]:.1e}{where['mean']}, "
                   f"var {worst['var'][0]:.1e}{where['var']}; tol {POPULATION_REL_TOL:g}")
    problems = [f"{k} differs by {v:.2e} in {n}" for k, (v, n) in worst.items() if not v <= POPULATION_REL_TOL]
    _judge(step, problems, s.device)


def autocast(check: Check, step: Step) -> None:
    if check.settings.device != "cuda":
        step.status, step.detail = SKIP, "FP16 autocast is measured on CUDA only (no CUDA device)"
        return
    _torch_gate(check, step, "fp16")


def _images_per_second(model: Any, x: Any, seconds: float, device: str) -> float:
    import torch

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    with torch.inference_mode():
        for _ in range(3):
            model(x)
        sync()
        calls, start = 0, time.perf_counter()
        while calls < 3 or time.perf_counter() - start < seconds:
            model(x)
            calls += 1
        sync()
    return len(x) * calls / (time.perf_counter() - start)


def _speed_cells(model: Any, cell: tuple[str, str, Any], batches: Any, check: Check, rows: list[dict[str, Any]],
                 skipped: list[str]) -> None:
    """Images per second (and peak GPU memory) of one mode and precision at each batch size."""
    import torch

    (mode, name, dtype), device = cell, check.settings.device
    for batch in batches:
        x = torch.randn(batch, 3, 224, 224, device=device, dtype=dtype).to(memory_format=torch.channels_last)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        try:
            speed = _images_per_second(model, x, check.settings.speed_seconds, device)
        except Exception as exc:  # torch.compile failing at first call, out of memory
            skipped.append(f"{mode} {name} b{batch}: {type(exc).__name__}: {str(exc)[:120]}")
            return
        peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
        rows.append({"mode": mode, "precision": name, "batch": batch, "images_per_second": round(speed, 1),
                     "peak_mib": round(peak, 1) if peak is not None else None})
        say(f"gpu-check: torch-speed {mode} {name} b{batch}: {speed:,.0f} img/s")


def torch_speed(check: Check, step: Step) -> None:
    """PyTorch's own throughput for BN-Inception 224 (random weights: speed does not depend on them)."""
    import torch

    from bninception.model.architecture import ModelConfig, build_model

    s, device = check.settings, check.settings.device
    _tf32_off()
    base = build_model(ModelConfig()).eval().to(device, memory_format=torch.channels_last)
    precisions = {"fp32": torch.float32, "fp16": torch.float16} if device == "cuda" else {"fp32": torch.float32}
    batches = s.speed_batches if device == "cuda" else s.speed_batches[:1]
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    for mode in ("eager", "compile"):
        for name, dtype in precisions.items():
            if check.left() < 60:
                skipped.append(f"{mode} {name}: time budget")
                continue
            model = base.to(dtype)
            if mode == "compile":
                try:
                    model = torch.compile(model)
                except Exception as exc:  # no compiler toolchain on the host
                    skipped.append(f"compile: {type(exc).__name__}: {exc}"[:160])
                    continue
            _speed_cells(model, (mode, name, dtype), batches, check, rows, skipped)
    step.data = {"rows": rows, "skipped": skipped, "channels_last": True, "tf32": False}
    best = max(rows, key=lambda r: r["images_per_second"], default=None)
    step.detail = f"{len(rows)} cells" + (f"; best {best['mode']} {best['precision']} b{best['batch']} "
                                          f"{best['images_per_second']:,.0f} img/s" if best else "")
    if device != "cuda":
        step.status, step.detail = SKIP, "no CUDA device: PyTorch on the CPU at batch 1 (code path only); " + \
            step.detail
    elif skipped:
        step.detail += f"; not measured: {'; '.join(skipped)}"[:300]


def _judge(step: Step, problems: list[str], device: str) -> None:
    if device == "cpu":
        step.status = SKIP
        step.detail = "no CUDA device: compared CPU with CPU (code path only); " + step.detail
    elif problems:
        step.status = FAIL
        step.detail += "; " + "; ".join(problems)


def _require_run(check: Check) -> Any:
    run = check.context.get("run")
    if run is None or not run.path("model.pt").is_file():
        raise RuntimeError("the pipeline step made no model.pt")
    return run


def engines(check: Check, step: Step) -> None:
    from bninception.engines import available
    from bninception.engines.detect import probe_host
    from bninception.engines.store import classify_engines

    run, result = _require_run(check), check.context.get("pipeline")
    ok, reason = available()
    built = {r.stage: {"status": r.status, **r.summary} for r in (result.results if result else [])
             if r.stage.startswith("build-engine")}
    here, why = probe_host()
    listing = [{"key": s.key, "state": s.state, "reason": s.reason} for s in classify_engines(run, here, why)]
    step.data = {"built": built, "engines": listing}
    if not ok:
        step.status, step.detail = SKIP, f"TensorRT engines not built: {reason}"
        return
    step.detail = ", ".join(f"{name} {r.get('engine', r['status'])}" for name, r in built.items()) + \
        f"; {sum(e['state'] == 'usable' for e in listing)} usable of {len(listing)}"
    if len(built) < len(PRECISIONS):
        step.status = FAIL
        errors = [r.summary["error"] for r in (result.results if result else []) if r.stage == "engines"]
        step.detail += f"; {errors[0][:200]}" if errors else "; the pipeline stopped before every engine was built"


def _stage_value(check: Check, stage: str) -> Any:
    """What the pipeline's ``stage`` returned (its report); an error when the stage did not run."""
    result = check.context.get("pipeline")
    found = next((r for r in result.results if r.stage == stage), None) if result else None
    if found is None or found.value is None:
        raise RuntimeError(f"the pipeline's {stage} stage did not run: "
                           f"{found.summary.get('error') or found.summary.get('reason') if found else 'no pipeline'}")
    return found.value


def validate(check: Check, step: Step) -> None:
    report = _stage_value(check, "validate")
    step.data = {**report.to_dict(), "table": report.table()}
    engine_rows = sum("tensorrt" in r.kind for r in report.rows)
    step.detail = (f"{report.verdict()}; {len(report.rows)} rows, {engine_rows} TensorRT, "
                   f"{report.data.get('images')} images")
    if not report.passed:
        step.status = FAIL


def bench(check: Check, step: Step) -> None:
    report = _stage_value(check, "bench")
    step.data = report.to_dict()
    biggest = max(check.settings.batch_sizes)
    best = sorted((r for r in report.results if r.batch_size == biggest and r.images_per_second),
                  key=lambda r: -(r.images_per_second or 0))
    errors = [r for r in report.results if r.error]
    step.detail = f"{len(report.results)} cells; fastest at batch {biggest}: " + \
        ", ".join(f"{r.name} {r.images_per_second:,.0f}/s" for r in best[:3])
    if errors:
        step.detail += f"; {len(errors)} errors, e.g. {errors[0].name}: {(errors[0].error or '')[:120]}"
        step.status = FAIL


# -- report -------------------------------------------------------------------------------------------
def summary_lines(steps: list[Step], env: dict[str, Any], seconds: float, json_path: Path | None) -> list[str]:
    """The one-screen summary: a line per step, then validate's rows, then the verdict."""
    width = max([len(s.name) for s in steps] + [4])
    gpu = f"{env.get('gpu')} (cc {env.get('compute_capability')})" if env.get("cuda_available") else "no CUDA GPU"
    lines = [f"bninception gpu-check: {gpu}, torch {env.get('torch')}, TensorRT {env.get('tensorrt') or '-'}, "
             f"onnxruntime {env.get('onnxruntime') or '-'}", ""]
    lines += [f"{s.name:<{width}}  {s.status:<5}  {s.seconds:7.1f} s  {s.detail}"[:160] for s in steps]
    validate_step = next((s for s in steps if s.name == "validate" and s.data.get("table")), None)
    if validate_step is not None:
        lines += ["", *(line[:160] for line in validate_step.data["table"].splitlines()[:20])]
    speed_step = next((s for s in steps if s.name == "torch-speed" and s.data.get("rows")), None)
    if speed_step is not None:
        lines += ["", "PyTorch BN-Inception 224, channels-last (images/s, peak MiB):"]
        lines += [f"  {r['mode']:<8} {r['precision']:<5} batch {r['batch']:>4}  {r['images_per_second']:>10,.0f}  "
                  f"{r['peak_mib'] if r['peak_mib'] is not None else '-'}" for r in speed_step.data["rows"]]
    verdict = overall(steps)
    lines += ["", f"overall: {verdict} in {seconds:.0f} s" + (f"; details: {json_path}" if json_path else "")]
    return lines


def overall(steps: list[Step]) -> str:
    """FAIL when a step failed or erred; PARTIAL when one was skipped (it verified less); else PASS."""
    if any(s.status in (FAIL, ERROR) for s in steps):
        return FAIL
    return PARTIAL if any(s.status == SKIP for s in steps) else PASS


# step -> (body, seconds it needs to be worth starting)
STEPS: dict[str, tuple[Callable[[Check, Step], None], float]] = {
    "environment": (environment, 0), "pipeline": (pipeline, 60), "torch-parity": (torch_parity, 10),
    "autocast": (autocast, 10), "population": (population_parity, 20), "torch-speed": (torch_speed, 60),
    "engines": (engines, 5), "validate": (validate, 0), "bench": (bench, 0),
}


def settings_from(args: argparse.Namespace) -> Settings:
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    s = Settings(out=Path(args.out), device=device, budget=args.budget)
    if args.quick:  # the code path in seconds, not a meaningful model
        s.epochs, s.max_steps = 1, 4
        s.population_batches, s.population_batch_size = 2, 32
        s.int8_samples, s.validate_limit = 64, 64
        s.batch_sizes, s.bench_min_seconds, s.bench_max_seconds = (1, 4), 0.02, 0.1
        s.speed_batches, s.speed_seconds = (1, 8), 0.1
    if args.epochs is not None:
        s.epochs = args.epochs
    if args.run is not None:
        s.given_run = Path(args.run)
        if not (s.given_run / "model.pt").is_file():
            raise SystemExit(f"gpu-check: --run {s.given_run} has no model.pt")
    return s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/gpu-check", help="work folder (replaced) (default: %(default)s)")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto",
                        help="the device compared with the CPU (default: cuda where PyTorch sees one, else cpu)")
    parser.add_argument("--budget", type=float, default=420.0,
                        help="seconds; steps that would start after it are skipped (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the demo recipe's 30)")
    parser.add_argument("--quick", action="store_true", help="tiny settings: checks the code path, not the model")
    parser.add_argument("--run", default=None,
                        help="copy this run (e.g. runs/demo) and keep its model instead of training one")
    parser.add_argument("--json", default=None, help="write the JSON here too (default: OUT/gpu_check.json)")
    parser.add_argument("--steps", default=",".join(STEPS),
                        help="comma-separated steps to run, in their fixed order (default: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = settings_from(args)
    if settings.out.exists():
        if any(settings.out.iterdir()) and not (settings.out / "gpu_check.json").is_file():
            print(f"gpu-check: {settings.out} exists and is not a gpu-check folder; refusing to replace it",
                  file=sys.stderr)
            return 2
        shutil.rmtree(settings.out)
    settings.out.mkdir(parents=True)
    wanted = [name.strip() for name in args.steps.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in STEPS]
    if unknown:
        parser.error(f"unknown step(s) {unknown}; choose from {', '.join(STEPS)}")
    check = Check(settings)
    for name, (body, needs) in STEPS.items():
        if name in wanted:
            check.step(name, functools.partial(body, check), needs=needs)
    seconds = time.perf_counter() - check.started
    json_path = settings.out / "gpu_check.json"
    document = {"format": "bninception-gpu-check/1", "overall": overall(check.steps), "seconds": round(seconds, 1),
                "environment": check.context.get("env", {}),
                "settings": {**asdict(settings), "out": str(settings.out)},
                "steps": [asdict(s) for s in check.steps]}
    text = json.dumps(document, indent=2, default=str) + "\n"
    atomic_write_text(json_path, text)
    if args.json:
        atomic_write_text(args.json, text)
    print("\n".join(summary_lines(check.steps, check.context.get("env", {}), seconds, json_path)))
    return EXIT[document["overall"]]


if __name__ == "__main__":
    raise SystemExit(main())

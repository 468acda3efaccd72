"""Benchmark every backend of a run: latency percentiles and throughput per batch size.

Each cell is warmed up, then timed within ``min/max_reps`` and ``min/max_seconds``; ONNX files run as
served, and with ``include_unoptimized`` the FP32 ones also with optimizations off.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from bninception.core import layout
from bninception.core.errors import BninceptionError
from bninception.core.files import atomic_write_json, parse_json
from bninception.core.rundir import RunDir
from bninception.core.stage import Done, StageResult, StageSpec, run_stage
from bninception.evaluate.artifact_runners import ArtifactRunner, Identity, Skipped, discover, vouched_inputs
from bninception.evaluate.tables import render

log = logging.getLogger(__name__)

REPORT_FORMAT = "bninception-bench/2"
DEFAULT_BATCH_SIZES = (1, 8, 32)


@dataclass(frozen=True)
class BenchSettings:
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    min_seconds: float = 0.5
    max_seconds: float = 3.0
    warmup_seconds: float = 0.15
    min_reps: int = 10
    max_reps: int = 2000
    threads: int = 0  # ONNX Runtime intra-op threads (0: its default)
    include_unoptimized: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.batch_sizes or any(int(b) < 1 for b in self.batch_sizes):
            raise BninceptionError(f"batch sizes must be positive integers, got {self.batch_sizes}")
        if not 0 < self.min_seconds <= self.max_seconds:
            raise BninceptionError(f"need 0 < min_seconds <= max_seconds, got {self.min_seconds}, "
                                   f"{self.max_seconds}")
        if not 1 <= self.min_reps <= self.max_reps:
            raise BninceptionError(f"need 1 <= min_reps <= max_reps, got {self.min_reps}, {self.max_reps}")


@dataclass(kw_only=True)
class BenchResult(Identity):
    """One (backend, batch size) cell; latencies in milliseconds per call (one batch)."""

    batch_size: int
    reps: int = 0
    warmup: int = 0
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    images_per_second: float | None = None
    seconds: float = 0.0
    error: str | None = None


@dataclass
class BenchReport:
    results: list[BenchResult]
    skipped: list[Skipped]
    machine: dict[str, Any]
    settings: dict[str, Any]
    seconds: float = 0.0

    def backends(self) -> list[str]:
        return list(dict.fromkeys(r.name for r in self.results))

    def to_dict(self) -> dict[str, Any]:
        return {"format": REPORT_FORMAT, "machine": self.machine, "settings": self.settings,
                "results": [asdict(r) for r in self.results],
                "skipped": [s.to_dict() for s in self.skipped], "seconds": round(self.seconds, 3)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchReport:
        if data.get("format") != REPORT_FORMAT:
            raise BninceptionError(f"not a {REPORT_FORMAT} document (format {data.get('format')!r})")
        return cls(results=[BenchResult(**r) for r in data["results"]],
                   skipped=[Skipped(**s) for s in data.get("skipped", [])],
                   machine=data.get("machine", {}), settings=data.get("settings", {}),
                   seconds=float(data.get("seconds", 0.0)))

    def table(self, markdown: bool = False) -> str:
        head = ["backend", "file", "provider", "ORT opt", "batch", "p50 ms", "p90 ms", "p99 ms", "images/s", "calls"]
        body = []
        for r in self.results:
            if r.error:
                body.append([r.name, r.artifact, r.provider, r.optimization or "-", str(r.batch_size), "error", "", "",
                             "", r.error[:60]])
                continue
            body.append([r.name, r.artifact, r.provider, r.optimization or "-", str(r.batch_size), _ms(r.p50_ms),
                         _ms(r.p90_ms), _ms(r.p99_ms), f"{r.images_per_second:,.0f}", str(r.reps)])
        lines = render(head, body, markdown)
        lines.append("")
        lines.append(machine_line(self.machine))
        lines += [f"skipped {s.artifact}: {s.reason}" for s in self.skipped if s.reason != "not built"]
        return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def machine_line(machine: dict[str, Any]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in machine.get("versions", {}).items() if v)
    gpu = machine.get("gpu") or "no GPU"
    return (f"machine: {machine.get('cpu', '?')}, {machine.get('cores_available', '?')} of "
            f"{machine.get('cores', '?')} cores, {gpu}; torch threads {machine.get('torch_threads', '?')}; "
            f"{versions}")


# -- machine -------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8")


def cpu_flags() -> list[str]:
    """The vector / matrix extensions of this CPU that the runtimes' kernels use (Linux; else none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), [])
    except OSError:
        return []
    return [f for f in CPU_FLAGS if f in flags]


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # PackageNotFoundError, or a broken distribution
        return None


def _onnxruntime_version() -> str | None:
    """The installed ONNX Runtime build's version, with its name when it is not plain onnxruntime."""
    from bninception.core.ort import installed_builds

    return ", ".join(f"{_version(d)}" + ("" if d == "onnxruntime" else f" ({d})") for d in installed_builds()) or None


def machine_info() -> dict[str, Any]:
    """CPU model, cores, GPU name (CUDA), and the versions of the runtimes that were timed."""
    import torch

    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = os.cpu_count() or 0
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    tensorrt = None
    try:
        from bninception.engines.detect import load_tensorrt

        trt = load_tensorrt()
        tensorrt = getattr(trt, "__version__", None) if trt is not None else None
    except ImportError:
        pass
    return {
        "cpu": cpu_model(), "cpu_flags": cpu_flags(), "cores": os.cpu_count(), "cores_available": available,
        "gpu": gpu,
        "platform": platform.platform(), "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "onnxruntime": _onnxruntime_version(),
                     "onnx": _version("onnx"), "numpy": np.__version__, "tensorrt": tensorrt},
    }


# -- timing --------------------------------------------------------------------------------------
def time_calls(call: Callable[[], object], settings: BenchSettings) -> tuple[list[float], int]:
    """(per-call seconds, warm-up calls): warm up, then time until the adaptive bounds are met."""
    warm, start = 0, time.perf_counter()
    while warm < 2 or (time.perf_counter() - start < settings.warmup_seconds and warm < settings.max_reps):
        call()
        warm += 1
    latencies: list[float] = []
    start = time.perf_counter()
    while len(latencies) < settings.max_reps:
        tick = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - tick)
        elapsed = time.perf_counter() - start
        if len(latencies) >= settings.min_reps and elapsed >= settings.min_seconds:
            break
        if elapsed >= settings.max_seconds and len(latencies) >= 3:
            break
    return latencies, warm


def bench_runner(art: ArtifactRunner, settings: BenchSettings) -> list[BenchResult]:
    """Every batch size of ``settings`` for one backend (errors become rows, not exceptions)."""
    results = []
    rng = np.random.default_rng(settings.seed)
    for batch_size in settings.batch_sizes:
        result = BenchResult(**asdict(art.identity()), batch_size=int(batch_size))
        tick = time.perf_counter()
        try:
            spec = art.input_spec
            if batch_size < spec.min_batch or (spec.max_batch is not None and batch_size > spec.max_batch):
                raise BninceptionError(f"batch {batch_size} outside the engine's range "
                                       f"[{spec.min_batch}, {spec.max_batch}]")
            batch = rng.standard_normal((batch_size, spec.channels, spec.height, spec.width),
                                        dtype=np.float32)
            latencies, warm = time_calls(functools.partial(art.run, batch), settings)
        except BninceptionError as exc:
            result.error = str(exc)
        else:
            seconds = np.asarray(latencies)
            p50, p90, p99 = np.percentile(seconds, [50, 90, 99]) * 1000.0
            result.reps, result.warmup = len(latencies), warm
            result.p50_ms, result.p90_ms, result.p99_ms = float(p50), float(p90), float(p99)
            result.mean_ms = float(seconds.mean() * 1000.0)
            result.images_per_second = float(batch_size / seconds.mean())
        result.seconds = round(time.perf_counter() - tick, 3)
        log.info("bench: %-28s batch %3d  %s", art.name, batch_size,
                 result.error or f"p50 {result.p50_ms:.3f} ms, {result.images_per_second:,.0f} images/s")
        results.append(result)
    return results


def bench_backends(run: RunDir, settings: BenchSettings, include_engines: bool = True,
                   providers: list[str] | None = None) -> tuple[list[ArtifactRunner], list[Skipped]]:
    """PyTorch eager (model.pt), every ONNX file (served configuration) on ``providers`` (None: every one
    available here), every engine."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"  # beside TensorRT engines on a GPU host
    arts, skipped = discover(run, include_engines=include_engines, include_ema=False, optimization="all",
                             threads=settings.threads, device=device, providers=providers)
    for art in arts:
        if art.is_reference:
            art.name = "PyTorch eager" if device == "cpu" else f"PyTorch eager ({device})"
    if settings.include_unoptimized and (providers is None or "cpu" in providers):
        extra, _ = discover(run, include_engines=False, include_ema=False, optimization="disable",
                            threads=settings.threads, providers=["cpu"])
        for art in extra:
            if art.kind in ("onnx", "onnx-folded"):
                art.name = f"{art.name}, opt off"
                arts.append(art)
    return arts, skipped


def bench_run(run: RunDir, batch_sizes: tuple[int, ...] | list[int] = DEFAULT_BATCH_SIZES,
              min_seconds: float = BenchSettings.min_seconds, max_seconds: float = BenchSettings.max_seconds,
              include_engines: bool = True, include_unoptimized: bool = True, threads: int = 0, save: bool = True,
              plot: bool = True, providers: list[str] | None = None,
              found: tuple[list[ArtifactRunner], list[Skipped]] | None = None) -> BenchReport:
    """Benchmark every backend of ``run`` (ONNX files on ``providers``, None: every one available here);
    save ``bench.json`` and the throughput plot."""
    settings = BenchSettings(batch_sizes=tuple(int(b) for b in batch_sizes), min_seconds=min_seconds,
                             max_seconds=max(max_seconds, min_seconds), threads=threads,
                             include_unoptimized=include_unoptimized)
    started = time.perf_counter()
    arts, skipped = found or bench_backends(run, settings, include_engines, providers)
    results: list[BenchResult] = []
    for art in arts:
        try:
            results += bench_runner(art, settings)
        finally:
            art.close()
    report = BenchReport(results=results, skipped=skipped, machine=machine_info(),
                         settings=asdict(settings), seconds=time.perf_counter() - started)
    if save:
        atomic_write_json(run.path(layout.BENCH_JSON), report.to_dict())
        if plot:
            from bninception.evaluate.plots import throughput_plot

            try:
                throughput_plot(report.to_dict(), run.path(layout.BENCH_PNG))
            except BninceptionError as exc:  # the numbers stand without their figure
                log.warning("bench: %s not drawn: %s", layout.BENCH_PNG, exc)
                run.path(layout.BENCH_PNG).unlink(missing_ok=True)  # an older figure would not match
    return report


def bench_stage(run: RunDir, batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES, force: bool = False,
                include_engines: bool = True, **kwargs: Any) -> StageResult:
    """:func:`bench_run` as a pipeline stage: skipped (bench.json re-read) when nothing changed."""

    params = {"format": REPORT_FORMAT, "batch_sizes": list(batch_sizes), **kwargs}
    settings = BenchSettings(batch_sizes=tuple(batch_sizes), threads=kwargs.get("threads", 0),
                             include_unoptimized=kwargs.get("include_unoptimized", True))
    found = bench_backends(run, settings, include_engines, kwargs.get("providers"))
    spec = StageSpec("bench", params, vouched_inputs(found[0]),
                     [layout.BENCH_JSON], optional_outputs=(layout.BENCH_PNG,))

    def body() -> Done:
        report = bench_run(run, batch_sizes, include_engines=include_engines, found=found, **kwargs)
        return Done({"results": len(report.results)}, report, f"{len(report.backends())} backends timed")

    return run_stage(run, spec, body, force=force, on_skip=lambda: BenchReport.from_dict(
        parse_json(run.path(layout.BENCH_JSON).read_bytes(), run.path(layout.BENCH_JSON))))


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """``"1,8,32"`` -> (1, 8, 32), with a clear error."""
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise BninceptionError(f"--batch-sizes must be comma-separated integers, got {text!r}") from exc
    if not sizes or any(s < 1 or s > 4096 for s in sizes):
        raise BninceptionError(f"--batch-sizes must be integers in 1..4096, got {text!r}")
    return sizes

"""CPU runtimes side by side: PyTorch eager, ONNX Runtime's CPU and OpenVINO providers, native OpenVINO.

BN-Inception 224x224 at full width, FP32 (``model.folded.onnx``) and INT8 (``model.int8.onnx``, the
TensorRT Q/DQ layout, and ``model.int8.cpu.onnx``, ONNX Runtime's U8S8 layout), batch 1/8/32, in one
bounded run. Native OpenVINO is the anchor: every cell is also printed as a ratio to native
OpenVINO's best file of that precision at that batch size. The last line is issue 13's criterion:
INT8 served in-process the way ``bninception serve`` does it (auto-picked provider, the INT8 file
``core.layout.SERVED_INT8`` names for it, the server's session settings) against native OpenVINO's
best INT8 file at batch 8; it must be >= 0.9x.

Each runtime runs in a worker subprocess of the environment that has it: PyTorch and ONNX Runtime's
CPU provider in this one (``.venv``, plain ``onnxruntime``); ONNX Runtime's OpenVINO provider in
``.venv-openvino`` (``onnxruntime-openvino``); native ``openvino`` in a second process of
``.venv-openvino`` (it ships other OpenVINO libraries than the provider; one process never loads
both); the served path alone in a third, as in a server. Timing is interleaved: each round times
every (runtime, file) once per batch size, in an order rotated per round, while the other workers
wait idle; the table gives the median over rounds and the range. The machine may be shared: compare
ratios from one run, not absolute numbers across runs.

The model has random weights and population statistics (Algorithm 2) from photo crops (speed does not
depend on the weights' values). Its files come from the project's own stages (export, fold) and the
int8 stage's own functions (calibration on photo crops, both Q/DQ layouts); the INT8 gate is not
applied here because a random network's 1000 logits are near ties (agreement with PyTorch is printed
as information). The gates are checked per provider by ``bninception validate`` on a trained run
(``make test-openvino``). The run directory is cached (``runs/cpu-runtimes``); a re-run only times.

    make bench-cpu-runtimes                 # creates .venv-openvino when missing; about 4 minutes
    .venv/bin/python benchmarks/cpu_runtimes.py [--rounds 5] [--batch-sizes 1,8,32] [--json OUT]

The precision view (``--precision``, ``make bench-precision``; no OpenVINO environment): the same
measurement on ONNX Runtime's CPU provider alone, one row per file (FP32 folded, FP16, both INT8 layouts)
beside PyTorch, each cell's ratio to the FP32 file, and the kernels ONNX Runtime runs for each file.
Accuracy through the gates on a trained model is ``bninception validate`` (``make test-avx2`` repeats the
INT8 gates on an emulated AVX2-only CPU).

    .venv/bin/python benchmarks/cpu_runtimes.py --precision [--rounds 3] [--batch-sizes 1,8,32]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from bninception.evaluate.bench import cpu_flags
from bninception.evaluate.tables import render

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RUN = ROOT / "runs" / "cpu-runtimes"
DEFAULT_OPENVINO_VENV = ROOT / ".venv-openvino"
CHECK_IMAGES = 32  # photo crops every row runs once, for the agreement column
CRITERION = 0.9  # issue 13: served INT8 >= 0.9x native OpenVINO's best INT8 at batch 8
CRITERION_BATCH = 8
KERNELS = ("Conv", "FusedConv", "QLinearConv", "DequantizeLinear", "QuantizeLinear", "Cast", "QLinearConcat",
           "QLinearAveragePool", "QLinearGlobalAveragePool", "NhwcMaxPool", "MaxPool")
FOLDED, FP16, INT8, INT8_CPU = "model.folded.onnx", "model.fp16.onnx", "model.int8.onnx", "model.int8.cpu.onnx"
MODEL_PT = "model.pt"
PRECISION_ANCHOR = f"ort-cpu:{FOLDED}"  # the precision view's anchor, for every precision


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- rows -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """One runtime on one file: ``env`` names the worker process that runs it."""

    key: str
    runtime: str  # label in the table
    kind: str  # torch | ort | served | openvino
    env: str  # the worker: dev | ort-openvino | openvino | served (alone in its process, as in a server)
    precision: str  # fp32 | int8
    file: str | None = None  # None for ``served``: serve's own choice
    provider: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # provider options / OpenVINO compile config

    @property
    def anchor(self) -> bool:
        return self.kind == "openvino" or self.key == PRECISION_ANCHOR


def default_rows() -> list[Row]:
    """The table's rows, FP32 then INT8. Native OpenVINO runs each file compiled for a dynamic batch and for the
    batch size at hand (static shapes, usually faster): the anchor is the best of them."""
    rows = [
        Row("torch", "PyTorch eager", "torch", "dev", "fp32", MODEL_PT),
        Row("ort-cpu:fp32", "ORT CPU EP", "ort", "dev", "fp32", FOLDED, "cpu"),
        Row("ort-ov:fp32", "ORT OpenVINO EP", "ort", "ort-openvino", "fp32", FOLDED, "openvino"),
        Row("ov:fp32", "OpenVINO native, f32 hint", "openvino", "openvino", "fp32", FOLDED,
            options={"INFERENCE_PRECISION_HINT": "f32"}),
        Row("ov:fp32:static", "OpenVINO native, f32 hint, static batch", "openvino", "openvino", "fp32", FOLDED,
            options={"INFERENCE_PRECISION_HINT": "f32", "static": True}),
    ]
    for file in (INT8, INT8_CPU):
        rows += [Row(f"ort-cpu:{file}", "ORT CPU EP", "ort", "dev", "int8", file, "cpu"),
                 Row(f"ort-ov:{file}", "ORT OpenVINO EP", "ort", "ort-openvino", "int8", file, "openvino"),
                 Row(f"ov:{file}", "OpenVINO native, default config", "openvino", "openvino", "int8", file),
                 Row(f"ov:{file}:static", "OpenVINO native, static batch", "openvino", "openvino", "int8", file,
                     options={"static": True})]
    rows.append(Row("served:int8", "served INT8 (serve's auto-pick, in-process)", "served", "served", "int8"))
    return rows


def precision_rows() -> list[Row]:
    """The precision view: PyTorch and every ONNX file on ONNX Runtime's CPU provider, FP32 the anchor."""
    files = {FOLDED: "fp32", FP16: "fp16", INT8: "int8", INT8_CPU: "int8"}
    return [Row("torch", "PyTorch eager", "torch", "dev", "fp32", MODEL_PT),
            *(Row(f"ort-cpu:{file}", "ORT CPU EP", "ort", "dev", precision, file, "cpu") for file, precision in
              files.items())]


# -- the model files -----------------------------------------------------------------------------
def photo_crops(preprocess: Any, count: int, seed: int) -> np.ndarray:
    from bninception.model.photos import PhotoCrops

    crops = PhotoCrops(preprocess, count, seed=seed)
    return np.stack([crops[i] for i in range(count)])


def prepare(run: Path, samples: int) -> dict[str, Any]:
    """The run directory's files (made once, then reused): model.pt, model.onnx, model.folded.onnx through the
    stages; FP16 and both INT8 layouts through the calibrate stages' functions (``samples`` calibration crops,
    no gate)."""
    import torch

    from bninception.calibrate.fp16 import convert_fp16
    from bninception.calibrate.qdq import CPU, TENSORRT, cpu_ranges, quantize, symmetric
    from bninception.calibrate.stages import DEFAULT_PERCENTILE, calibrate
    from bninception.core.files import atomic_write_bytes, atomic_write_json
    from bninception.core.rundir import RunDir
    from bninception.export.onnx_io import load_onnx
    from bninception.export.stages import export_stage, fold_stage
    from bninception.model.architecture import ModelConfig, build_model
    from bninception.model.checkpoint import save_model
    from bninception.model.data import imagenet_preprocess
    from bninception.model.labels import ClassLabels
    from bninception.model.population import apply_population_statistics

    rundir = RunDir(run)
    if not rundir.path(MODEL_PT).is_file():
        say("building BN-Inception 224 (random weights, population statistics from photo crops) ...")
        preprocess = imagenet_preprocess(224)
        torch.manual_seed(0)
        model = build_model(ModelConfig())
        crops = torch.from_numpy(photo_crops(preprocess, 32, seed=11))
        apply_population_statistics(model, torch.utils.data.TensorDataset(crops, torch.zeros(32)), batches=2,
                                    batch_size=16)
        save_model(rundir.path(MODEL_PT), model, preprocess,
                   ClassLabels.plain([f"class{i}" for i in range(model.config.num_classes)]),
                   statistics="population (32 photo crops; random weights, for speed only)")
        rundir.record("population", {"photo_crops": 32, "random_weights": True}, [], [MODEL_PT], 0.0)
    for stage in (export_stage, fold_stage):
        result = stage(rundir)
        say(f"  {result.stage}: {result.status}")
    marker = rundir.path("int8_bench.json")
    folded_sha = rundir.sha256(FOLDED)
    wanted = {"folded_sha256": folded_sha, "samples": samples, "method": "percentile"}
    current = json.loads(marker.read_text()) if marker.is_file() else None
    if current != wanted or not all(rundir.path(n).is_file() for n in (FP16, INT8, INT8_CPU)):
        say(f"FP16, and INT8 calibrated on {samples} photo crops (the stages' functions, both layouts) ...")
        folded = load_onnx(rundir.path(FOLDED))
        atomic_write_bytes(rundir.path(FP16), convert_fp16(folded)[0].SerializeToString())
        calib = calibrate(None, folded, folded_sha, "percentile", samples, DEFAULT_PERCENTILE)
        atomic_write_bytes(rundir.path(INT8), quantize(folded, symmetric(calib.amax), TENSORRT).SerializeToString())
        atomic_write_bytes(rundir.path(INT8_CPU),
                           quantize(folded, cpu_ranges(calib.minmax, calib.minimum), CPU).SerializeToString())
        atomic_write_json(marker, wanted)
        rundir.record("cpu-runtimes", wanted, [FOLDED], [FP16, INT8, INT8_CPU], 0.0)  # so that serve takes them
    return wanted


def reference(run: Path, threads: int) -> tuple[Path, np.ndarray]:
    """``CHECK_IMAGES`` photo crops (saved for the workers) and PyTorch's logits on them."""
    from bninception.core.runner import InputSpec, TorchRunner, run_all
    from bninception.model.checkpoint import load_model

    model, preprocess, _, _ = load_model(run / MODEL_PT)
    images = photo_crops(preprocess, CHECK_IMAGES, seed=1)
    path = run / "check_images.npy"
    np.save(path, images.astype(np.float32))
    spec = InputSpec("data", preprocess.channels, preprocess.size, preprocess.size)
    if threads:
        import torch

        torch.set_num_threads(threads)
    return path, run_all(TorchRunner(model, spec), images, batch_size=8)


# -- worker (runs inside one environment) ----------------------------------------------------------
class Loaded:
    """A row's callable ``batch -> logits`` and what it reports about itself."""

    def __init__(self, call: Any, info: dict[str, Any]) -> None:
        self.call = call
        self.info = info


def load_row(row: Row, run: Path, threads: int) -> Loaded:
    """Open ``row`` in this process: its session / compiled model, ready to time."""
    if row.kind == "torch":
        import torch

        from bninception.core.runner import InputSpec, TorchRunner
        from bninception.model.checkpoint import load_model

        torch.set_num_threads(threads or os.cpu_count() or 1)
        model, pre, _, _ = load_model(run / MODEL_PT)
        runner = TorchRunner(model, InputSpec("data", pre.channels, pre.size, pre.size))
        return Loaded(runner.run, {"torch": torch.__version__, "threads": torch.get_num_threads()})
    if row.kind in ("ort", "served"):
        import onnxruntime

        from bninception.core.runner import OrtRunner

        if row.kind == "served":  # what `bninception serve --run RUN --precision int8` opens (serve/state.py)
            from bninception.serve.config import ServeConfig
            from bninception.served import served_model

            served = served_model(run, row.precision)
            config = ServeConfig(providers=served.providers)
            runner = OrtRunner(served.path, name="served", providers=config.providers,
                               optimization=config.optimization, threads=config.threads, spinning=config.spinning)
            file = served.path.name
        else:
            runner = OrtRunner(run / str(row.file), name=row.key, providers=[str(row.provider)], optimization="all",
                               threads=threads, spinning=False, provider_options=row.options or None)
            file = str(row.file)
        from bninception.core.ort import user_name

        info = {"onnxruntime": onnxruntime.__version__, "file": file,
                "providers": [user_name(p) for p in runner.providers[:1]]}
        if row.provider == "cpu":
            info["kernels"] = kernels(run / file, threads)
        return Loaded(runner.run, info)
    if row.kind == "openvino":
        import openvino as ov

        core = ov.Core()
        options = dict(row.options)
        static = bool(options.pop("static", False))
        config = {**options, **({"INFERENCE_NUM_THREADS": threads} if threads else {})}
        requests: dict[int | None, Any] = {}

        def request_for(size: int | None) -> Any:
            """The infer request of a model compiled for a dynamic batch (None) or for ``size`` images."""
            if size not in requests:
                model = core.read_model(str(run / str(row.file)))
                if size is not None:
                    shape = model.input(0).get_partial_shape()
                    shape[0] = size
                    model.reshape(shape)
                requests[size] = core.compile_model(model, "CPU", config).create_infer_request()
            return requests[size]

        def call(batch: np.ndarray) -> np.ndarray:
            request = request_for(len(batch) if static else None)
            request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)}, share_inputs=True)
            return np.array(request.get_output_tensor(0).data, dtype=np.float32)

        hint = request_for(None if not static else 8).get_compiled_model().get_property("INFERENCE_PRECISION_HINT")
        return Loaded(call, {"openvino": ov.__version__, "file": row.file, "precision_hint": str(hint)})
    raise ValueError(f"unknown row kind {row.kind!r}")


def kernels(path: Path, threads: int) -> dict[str, int]:
    """The ops ONNX Runtime's CPU provider runs after its optimizations (what the CPU really executes)."""
    import tempfile

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.optimized_model_filepath = optimized = str(Path(tmp) / "optimized.onnx")
        options.intra_op_num_threads = threads
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        counts = Counter(node.op_type for node in onnx.load(optimized).graph.node)
    return {op: counts[op] for op in KERNELS if counts.get(op)}


def time_call(call: Any, batch: np.ndarray, seconds: float) -> tuple[float, int]:
    """(seconds per call, calls) by ``bench.time_calls``: two warm-up calls, then calls for ``seconds``."""
    from bninception.evaluate.bench import BenchSettings, time_calls

    settings = BenchSettings(min_seconds=seconds, max_seconds=seconds, warmup_seconds=0.0, min_reps=1,
                             max_reps=1 << 30)
    latencies, _ = time_calls(functools.partial(call, batch), settings)
    return float(np.mean(latencies)), len(latencies)


def worker_main(run: Path, threads: int) -> int:
    """Answer JSON-line commands on stdin (load, check, time, quit); replies on the real stdout."""
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything a runtime prints goes to stderr, never into the protocol
    loaded: dict[str, Loaded] = {}
    batches: dict[int, np.ndarray] = {}
    for line in sys.stdin:
        message = json.loads(line)
        command = message["cmd"]
        try:
            if command == "quit":
                replies.write(json.dumps({"ok": True}) + "\n")
                return 0
            if command == "load":
                row = Row(**message["row"])
                loaded[row.key] = load_row(row, run, threads)
                reply: dict[str, Any] = {"ok": True, "info": loaded[row.key].info}
            elif command == "check":
                images = np.load(message["images"])
                call = loaded[message["key"]].call
                logits = np.concatenate([call(images[i:i + 8]) for i in range(0, len(images), 8)])
                np.save(message["out"], logits)
                reply = {"ok": True}
            elif command == "time":
                size = int(message["batch"])
                if size not in batches:
                    batches[size] = np.random.default_rng(0).standard_normal((size, 3, 224, 224), dtype=np.float32)
                per_call, calls = time_call(loaded[message["key"]].call, batches[size], float(message["seconds"]))
                reply = {"ok": True, "seconds": per_call, "calls": calls}
            else:
                reply = {"ok": False, "error": f"unknown command {command!r}"}
        except Exception as exc:  # a runtime's own error types: report it, keep serving the other rows
            first = str(exc).strip().splitlines()
            reply = {"ok": False, "error": f"{type(exc).__name__}: {first[-1] if first else ''}"[:400]}
        replies.write(json.dumps(reply) + "\n")
    return 0


class Worker:
    """A worker subprocess of one environment (its Python), driven line by line."""

    def __init__(self, env: str, python: Path, run: Path, threads: int) -> None:
        self.env = env
        self.proc = subprocess.Popen([str(python), str(Path(__file__).resolve()), "--worker", "--run", str(run),
                                      "--threads", str(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})

    def ask(self, **message: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.env} worker exited (status {self.proc.wait()}); see its stderr above")
        return json.loads(line)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, OSError):
            self.ask(cmd="quit")
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -- measurement ---------------------------------------------------------------------------------
@dataclass
class Result:
    row: Row
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    agreement: float | None = None
    max_abs_diff: float | None = None
    images_per_s: dict[int, list[float]] = field(default_factory=dict)

    def median(self, batch: int) -> float | None:
        values = self.images_per_s.get(batch)
        return statistics.median(values) if values else None


def measure(rows: list[Row], workers: dict[str, Worker], run: Path, images: Path, ref: np.ndarray,
            batch_sizes: list[int], rounds: int, seconds: float) -> list[Result]:
    """Load every row, check its logits against PyTorch, then time interleaved rounds."""
    from bninception.core.gates import compare

    results = [Result(row) for row in rows]
    for result in results:
        worker = workers[result.row.env]
        reply = worker.ask(cmd="load", row=asdict(result.row))
        if not reply["ok"]:
            result.error = reply["error"]
            say(f"  {result.row.key}: cannot load: {result.error}")
            continue
        result.info = reply["info"]
        out = run / f"check_{result.row.key.replace(':', '_')}.npy"
        reply = worker.ask(cmd="check", key=result.row.key, images=str(images), out=str(out))
        if not reply["ok"]:
            result.error = reply["error"]
            continue
        cmp = compare(ref, np.load(out), f"{CHECK_IMAGES} photo crops")
        out.unlink()
        result.agreement, result.max_abs_diff = cmp.top1_agreement, cmp.max_abs_diff
        say(f"  loaded {result.row.key}: {result.info}; top-1 agreement with PyTorch "
            f"{100 * cmp.top1_agreement:.0f}%, max abs diff {cmp.max_abs_diff:.3g}")
    live = [r for r in results if r.error is None]
    for number in range(rounds):
        tick = time.perf_counter()
        shift = number % max(1, len(live))
        for batch in batch_sizes:
            for result in live[shift:] + live[:shift]:
                reply = workers[result.row.env].ask(cmd="time", key=result.row.key, batch=batch, seconds=seconds)
                if reply["ok"]:
                    result.images_per_s.setdefault(batch, []).append(batch / reply["seconds"])
                else:
                    result.error = reply["error"]
        say(f"  round {number + 1}/{rounds}: {time.perf_counter() - tick:.0f} s, load {os.getloadavg()[0]:.1f}")
    return results


def anchors(results: list[Result], batch_sizes: list[int]) -> dict[tuple[str, int], Result]:
    """(precision, batch) -> native OpenVINO's fastest row there (median images/s)."""
    best: dict[tuple[str, int], Result] = {}
    for result in results:
        if not result.row.anchor:
            continue
        for batch in batch_sizes:
            value, key = result.median(batch), (result.row.precision, batch)
            if value is not None and (key not in best or value > (best[key].median(batch) or 0)):
                best[key] = result
    return best


def criterion(results: list[Result], best: dict[tuple[str, int], Result]) -> dict[str, Any] | None:
    """Served INT8 vs native OpenVINO's best INT8 at batch 8: ratio of medians, and per-round ratios."""
    served = next((r for r in results if r.row.kind == "served" and r.median(CRITERION_BATCH)), None)
    anchor = best.get(("int8", CRITERION_BATCH))
    if served is None or anchor is None:
        return None
    native = [r for r in results if r.row.anchor and r.row.precision == "int8" and r.images_per_s.get(CRITERION_BATCH)]
    per_round = [s / max(values) for s, *values in zip(served.images_per_s[CRITERION_BATCH],
                                                       *(r.images_per_s[CRITERION_BATCH] for r in native),
                                                       strict=True)]
    ratio = (served.median(CRITERION_BATCH) or 0) / (anchor.median(CRITERION_BATCH) or 1)
    return {"served": served.info, "served_images_per_s": served.median(CRITERION_BATCH),
            "anchor": anchor.row.key, "anchor_images_per_s": anchor.median(CRITERION_BATCH), "ratio": ratio,
            "per_round_ratio": [min(per_round), statistics.median(per_round), max(per_round)],
            "passed": ratio >= CRITERION}


def cell(result: Result, batch: int, best: dict[tuple[str, int], Result]) -> str:
    values = result.images_per_s.get(batch)
    if not values:
        return "error" if result.error else "-"
    anchor = best.get((result.row.precision, batch))
    reference = anchor.median(batch) if anchor else None
    ratio = f" {statistics.median(values) / reference:.2f}x" if reference else ""
    return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f}){ratio}"


def table(results: list[Result], batch_sizes: list[int], best: dict[tuple[str, int], Result]) -> str:
    """The Markdown table: images/s median (range) and the ratio to the anchor, per batch size."""
    head = ["runtime", "file", "prec", *(f"batch {b}" for b in batch_sizes), "agree vs PyTorch"]
    body = []
    for result in results:
        file = result.info.get("file") or result.row.file or "-"
        if result.row.kind == "served":
            file = f"{file} on {','.join(result.info.get('providers', []) or ['?'])}"
        agree = "-" if result.agreement is None else f"{100 * result.agreement:.0f}%"
        body.append([result.row.runtime, file, result.row.precision, *(cell(result, b, best) for b in batch_sizes),
                     agree])
    return "\n".join(render(head, body, markdown=True))


def openvino_python(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.is_file():
        raise SystemExit(f"error: {python} is missing: `make setup-openvino` creates {venv} (onnxruntime-openvino "
                         f"for ONNX Runtime's OpenVINO provider, openvino for the native anchor)")
    return python


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--run", type=Path, default=DEFAULT_RUN, help="run directory (made once, then reused)")
    parser.add_argument("--openvino-venv", type=Path, default=DEFAULT_OPENVINO_VENV)
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.3, help="minimum time per cell and round")
    parser.add_argument("--threads", type=int, default=0, help="threads per runtime (0: each runtime's default)")
    parser.add_argument("--samples", type=int, default=64, help="INT8 calibration crops")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--precision", action="store_true",
                        help="the precision view: every ONNX file on ONNX Runtime's CPU provider, FP32 the anchor")
    args = parser.parse_args(argv)
    args.run = run = args.run.resolve()
    if args.worker:
        return worker_main(run, args.threads)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    if CRITERION_BATCH not in batch_sizes or args.rounds < 1:
        parser.error(f"--batch-sizes must include {CRITERION_BATCH} and --rounds must be >= 1")
    pythons = {"dev": Path(sys.executable)}
    if not args.precision:
        pythons.update(dict.fromkeys(("ort-openvino", "openvino", "served"), openvino_python(args.openvino_venv)))
    started = time.perf_counter()
    load_start = os.getloadavg()
    say(f"{os.cpu_count()} CPUs, flags: {' '.join(cpu_flags())}; load {load_start[0]:.1f}")
    prepare(run, args.samples)
    images, ref = reference(run, args.threads)
    rows = precision_rows() if args.precision else default_rows()
    workers = {env: Worker(env, pythons[env], run, args.threads) for env in dict.fromkeys(r.env for r in rows)}
    try:
        results = measure(rows, workers, run, images, ref, batch_sizes, args.rounds, args.seconds)
    finally:
        for worker in workers.values():
            worker.close()
    best = anchors(results, batch_sizes)
    if args.precision:  # every file against the FP32 file
        best = {(r.row.precision, b): best[("fp32", b)] for r in results for b in batch_sizes if ("fp32", b) in best}
    done = criterion(results, best)
    load_end = os.getloadavg()
    print_results(args, results, batch_sizes, best, done, (load_start[0], load_end[0]))
    print(f"{time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({
            "flags": cpu_flags(), "load": [load_start[0], load_end[0]], "rounds": args.rounds,
            "batch_sizes": batch_sizes, "criterion": done,
            "rows": [{**asdict(r.row), "info": r.info, "error": r.error, "agreement": r.agreement,
                      "max_abs_diff": r.max_abs_diff, "images_per_s": r.images_per_s} for r in results]}, indent=2))
    return 0 if done is None or done["passed"] else 1


def print_results(args: argparse.Namespace, results: list[Any], batch_sizes: list[int], best: dict[Any, Any],
                  done: dict[str, Any] | None, load: tuple[float, float]) -> None:
    """The table, the versions, errors and kernels per file, and the issue-13 criterion line."""
    anchor = "the FP32 file on ORT's CPU provider" if args.precision else \
        "native OpenVINO's best file of the same precision"
    print(f"\nBN-Inception 224, full width; images/s, median of {args.rounds} interleaved rounds (range), and the "
          f"ratio to {anchor}; {os.cpu_count()} CPUs "
          f"({' '.join(cpu_flags())}), threads {args.threads or 'default'}; load {load[0]:.1f} -> {load[1]:.1f}\n")
    print(table(results, batch_sizes, best))
    versions = {f"{k} {v}".split("-")[0] + f" ({r.row.env})" for r in results for k, v in r.info.items()
                if k in ("torch", "onnxruntime", "openvino")}
    print(f"\nversions: {', '.join(sorted(versions))}")
    for result in results:
        if result.error:
            print(f"error {result.row.key}: {result.error}")
        if result.info.get("kernels"):
            print(f"kernels ONNX Runtime runs for {result.row.file}: {result.info['kernels']}")
    if done:
        per_round = ", ".join(f"{x:.2f}" for x in done["per_round_ratio"])
        print(f"\nissue 13 criterion: served INT8 ({done['served'].get('file')} on "
              f"{','.join(done['served'].get('providers', []))}) at batch {CRITERION_BATCH}: "
              f"{done['served_images_per_s']:.0f} images/s = {done['ratio']:.2f}x native OpenVINO's best INT8 "
              f"({done['anchor']}, {done['anchor_images_per_s']:.0f} images/s; per-round ratios min/median/max "
              f"{per_round}): {'PASS' if done['passed'] else 'FAIL'} (>= {CRITERION}x)")


if __name__ == "__main__":
    raise SystemExit(main())

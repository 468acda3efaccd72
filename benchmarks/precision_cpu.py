"""ONNX Runtime CPU throughput and accuracy of FP32 (folded), FP16 and the INT8 layouts, batch 1 and 32.

Models: the demo network (``--run RUN``: the run's model.folded.onnx; else untrained, digits statistics)
and BN-Inception 224 (untrained, population statistics from photo crops: speed does not depend on the
weights; there only the relative RMS logit error means anything). INT8: ``int8-trt`` (TensorRT Q/DQ
layout), ``int8-cpu`` (shipped: U8 x 7-bit S8) and the candidates it was chosen over (``-8bit``,
``-u8u8``), from one calibration; each judged against FP32 through its gate. Also prints the kernels
ORT runs and the CPU's flags; ``--emulate-cpu EPYC-Rome`` re-runs the accuracy under ``qemu-x86_64``
(AVX2 only). Variants are timed round-robin, median per variant; about 2-4 minutes on 2 cores.

    .venv/bin/python benchmarks/precision_cpu.py [--run runs/demo] [--rounds 3] [--threads 0]
        [--skip-full] [--accuracy-only] [--emulate-cpu EPYC-Rome] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from cpu_runtimes import PhotoSet, say, time_call

from bninception.bench import cpu_flags
from bninception.tables import pct, render

VARIANTS = ("fp32", "fp16", "int8-trt", "int8-cpu", "int8-cpu-8bit", "int8-cpu-u8u8")
KERNELS = ("Conv", "FusedConv", "QLinearConv", "DequantizeLinear", "QuantizeLinear", "Cast",
           "QLinearConcat", "QLinearAveragePool", "QLinearGlobalAveragePool", "NhwcMaxPool", "MaxPool")


def build_folded(config: Any, dataset: Any, size: int, batches: int, batch_size: int) -> onnx.ModelProto:
    """Build the network, set Algorithm 2 population statistics, export and fold."""
    import torch

    from bninception.export.fold import fold_batchnorm
    from bninception.export.to_onnx import to_model_proto
    from bninception.model.architecture import build_model
    from bninception.model.population import apply_population_statistics

    torch.manual_seed(0)
    model = build_model(config)
    apply_population_statistics(model, dataset, batches=batches, batch_size=batch_size)
    proto = to_model_proto(model.eval(), (config.in_channels, size, size), 17)
    return fold_batchnorm(proto)[0]


def make_variants(folded: onnx.ModelProto, calibration: np.ndarray, out_dir: Path) -> dict[str, Path]:
    """FP16 and both INT8 layouts, as the int8 stage makes them (TensorRT layout: percentile 99.99
    ranges; ORT CPU layout: max ranges) over ``calibration``."""
    from bninception.calibrate.fp16 import convert_fp16
    from bninception.calibrate.graph import weighted_ops
    from bninception.calibrate.qdq import CPU, TENSORRT, cpu_ranges, quantize, symmetric
    from bninception.calibrate.ranges import collect, compute_amax
    from bninception.calibrate.stages import float_tensors

    paths = {"fp32": out_dir / "fp32.onnx"}
    onnx.save(folded, paths["fp32"])
    half, _ = convert_fp16(folded)
    paths["fp16"] = out_dir / "fp16.onnx"
    onnx.save(half, paths["fp16"])
    names = float_tensors(folded)
    batches = [calibration[i:i + 8] for i in range(0, len(calibration), 8)]
    stats = collect(folded, names, lambda: batches, histograms=True)
    amax = compute_amax(stats, "percentile", 99.99, keep_max=[v.name for v in folded.graph.input])
    assert {op.activation for op in weighted_ops(folded)} <= set(amax)
    paths["int8-trt"] = out_dir / "int8_trt.onnx"
    onnx.save(quantize(folded, symmetric(amax), TENSORRT), paths["int8-trt"])
    candidates = {"int8-cpu": CPU, "int8-cpu-8bit": replace(CPU, reduce_range=False),
                  "int8-cpu-u8u8": replace(CPU, reduce_range=False, weight_signed=False)}
    for variant, layout in candidates.items():
        paths[variant] = out_dir / f"{variant}.onnx"
        onnx.save(quantize(folded, cpu_ranges(stats.amax, stats.amin), layout), paths[variant])
    return paths


def accuracy(label: str, paths: dict[str, Path], images: np.ndarray, labels: np.ndarray | None,
             threads: int) -> list[dict[str, Any]]:
    """Each variant against FP32 (all graph optimizations, as served) through the gate of its precision."""
    from bninception.core.gates import GATES, compare
    from bninception.core.runner import OrtRunner, run_all

    def logits(path: Path) -> np.ndarray:
        return run_all(OrtRunner(path, threads=threads), images, batch_size=32)

    reference = logits(paths["fp32"])
    rows = []
    for variant, path in paths.items():
        if variant == "fp32":
            continue
        out = logits(path)
        cmp = compare(reference, out, f"{len(images)} images", labels)
        failures = GATES[variant.split("-")[0]].failures(cmp)
        rms = float(np.sqrt(np.mean((out - reference) ** 2)) / np.sqrt(np.mean(reference ** 2)))
        rows.append({"model": label, "variant": variant, "agreement": round(cmp.top1_agreement, 4),
                     "drop_points": cmp.accuracy_drop_points, "max_abs_diff": round(cmp.max_abs_diff, 3),
                     "relative_rms": round(rms, 4),
                     "gate": "FAIL: " + "; ".join(failures) if failures else "PASS"})
        say(f"  {label} {variant}: agreement {100 * cmp.top1_agreement:.2f}%, {rows[-1]['gate']}")
    return rows


def kernels(path: Path, threads: int, tmp: Path) -> dict[str, int]:
    """The ops ONNX Runtime runs after its optimizations (what the CPU really executes)."""
    import onnxruntime as ort

    optimized = tmp / f"{path.stem}.optimized.onnx"
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(optimized)
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    counts = Counter(n.op_type for n in onnx.load(str(optimized)).graph.node)
    return {k: counts[k] for k in KERNELS if counts.get(k)}


def bench_model(label: str, paths: dict[str, Path], shape: tuple[int, ...], batches: tuple[int, ...],
                rounds: int, seconds: float, threads: int, tmp: Path) -> list[dict[str, Any]]:
    from bninception.core.runner import OrtRunner

    sessions = {v: OrtRunner(p, threads=threads).run for v, p in paths.items()}
    rows = []
    for batch_size in batches:
        x = np.random.default_rng(0).standard_normal((batch_size, *shape)).astype(np.float32)
        times: dict[str, list[float]] = {v: [] for v in sessions}
        for _ in range(rounds):
            for variant, run in sessions.items():
                times[variant].append(time_call(run, x, seconds, warm=False)[0])
        base = statistics.median(times["fp32"])
        for variant in sessions:
            t = statistics.median(times[variant])
            rows.append({"model": label, "batch": batch_size, "variant": variant, "ms": round(1e3 * t, 3),
                         "images_per_s": round(batch_size / t, 1), "speedup_vs_fp32": round(base / t, 2)})
            say(f"  {label} b{batch_size} {variant}: {1e3 * t:.2f} ms ({base / t:.2f}x fp32)")
    for variant, path in paths.items():
        rows.append({"model": label, "variant": variant, "kernels": kernels(path, threads, tmp)})
    return rows


def demo_paths(run: str | None, tmp: Path) -> tuple[dict[str, Path], str, tuple[np.ndarray, np.ndarray]]:
    """The demo variants (from ``run``'s model.folded.onnx when given, else an untrained demo network),
    calibrated on 256 validation digits, and the test split they are judged on."""
    from bninception.model.architecture import ModelConfig
    from bninception.model.data import load_bundle, stack_split

    bundle = load_bundle("digits", 32, 0)
    calibration, _ = stack_split(bundle.val, limit=256)
    test = stack_split(bundle.test)
    if run and Path(run, "model.folded.onnx").is_file():
        folded = onnx.load(str(Path(run, "model.folded.onnx")))
        return make_variants(folded, calibration, tmp / "demo"), f"{run} (trained)", test
    folded = build_folded(ModelConfig(num_classes=10, in_channels=1, width=0.25), bundle.train, 32, 4, 64)
    return (make_variants(folded, calibration, tmp / "demo"), "demo architecture, untrained, digits statistics",
            test)


def full_paths(tmp: Path, crops: int) -> tuple[dict[str, Path], np.ndarray]:
    """BN-Inception 224 variants (population statistics and calibration from photo crops), and
    ``crops`` other crops to judge them on."""
    from bninception.model.architecture import ModelConfig
    from bninception.model.data import imagenet_preprocess

    pre = imagenet_preprocess(224)
    dataset = PhotoSet(pre, 32 + crops, seed=11)
    folded = build_folded(ModelConfig(), dataset, 224, 2, 8)
    calibration = np.stack([dataset.crops[i] for i in range(16, 32)])
    return make_variants(folded, calibration, tmp / "full"), np.stack([dataset.crops[i] for i in range(32, 32 + crops)])


def print_table(rows: list[dict[str, Any]]) -> None:
    print("\n".join(render(["model", "variant", "agreement", "drop", "max diff", "rel. RMS", "gate"], [
        [r["model"], r["variant"], pct(r["agreement"]), "-" if r["drop_points"] is None else f"{r['drop_points']:.2f}",
         f"{r['max_abs_diff']:.3f}", pct(r["relative_rms"]), r["gate"]] for r in rows if "agreement" in r])))
    print("\n" + "\n".join(render(["model", "batch", "variant", "ms/batch", "img/s", "vs fp32"], [
        [r["model"], str(r["batch"]), r["variant"], f"{r['ms']:.2f}", f"{r['images_per_s']:.1f}",
         f"{r['speedup_vs_fp32']:.2f}x"] for r in rows if "ms" in r])))
    print("\nkernels ONNX Runtime runs (optimized graph, ALL level):")
    for row in rows:
        if "kernels" in row:
            print(f"  {row['model']:<20} {row['variant']:<10} {row['kernels']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a run directory whose demo artifacts to use")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=0.5, help="minimum time per measurement")
    parser.add_argument("--threads", type=int, default=0, help="ORT intra-op threads (0: all cores)")
    parser.add_argument("--skip-full", action="store_true", help="demo model only")
    parser.add_argument("--accuracy-only", action="store_true", help="no timing (as under emulation)")
    parser.add_argument("--crops", type=int, default=8, help="photo crops that judge the 224 variants")
    parser.add_argument("--emulate-cpu", metavar="MODEL",
                        help="re-run the accuracy part under qemu-x86_64 -cpu MODEL (e.g. EPYC-Rome: AVX2 only)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.emulate_cpu:
        import shutil

        if shutil.which("qemu-x86_64") is None:
            raise SystemExit("--emulate-cpu needs qemu-x86_64 (apt-get install qemu-user)")
        rest = [a for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith("--emulate-cpu")
                and a != args.emulate_cpu]
        os.environ["BNINCEPTION_EMULATED_CPU"] = args.emulate_cpu
        os.execvp("qemu-x86_64", ["qemu-x86_64", "-cpu", args.emulate_cpu, sys.executable, __file__, *rest,
                                  "--accuracy-only"])
    import onnxruntime as ort

    started = time.perf_counter()
    emulated = os.environ.get("BNINCEPTION_EMULATED_CPU")
    flags = f"emulated {emulated} (qemu)" if emulated else f"flags: {' '.join(cpu_flags())}"
    say(f"onnxruntime {ort.__version__}, {os.cpu_count()} CPUs, {flags}")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "demo").mkdir()
        (tmp / "full").mkdir()
        say("building the demo model variants ...")
        paths, source, (images, labels) = demo_paths(args.run, tmp)
        say(f"demo: {source}")
        rows += accuracy("demo 1x32x32 w0.25", paths, images, labels, args.threads)
        if not args.accuracy_only:
            rows += bench_model("demo 1x32x32 w0.25", paths, (1, 32, 32), (1, 32), args.rounds, args.seconds,
                                args.threads, tmp)
        if not args.skip_full:
            say("building BN-Inception 224x224 (population statistics from photo crops) ...")
            paths, crops = full_paths(tmp, args.crops)
            rows += accuracy("bn-inception 3x224x224", paths, crops, None, args.threads)
            if not args.accuracy_only:
                rows += bench_model("bn-inception 3x224x224", paths, (3, 224, 224), (1, 32),
                                    max(2, args.rounds - 1), args.seconds, args.threads, tmp)
    print_table(rows)
    print(f"\nonnxruntime {ort.__version__}; CPU: {flags}; "
          f"threads {args.threads or 'default'}; {time.perf_counter() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"flags": cpu_flags(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

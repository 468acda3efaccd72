"""INT8 margins over training seeds: both INT8 files of each demo recipe against their gates.

For each recipe and seed it trains a run (cached under --out: a second call re-reads it), calibrates once,
and quantizes the folded model in both layouts (``model.int8.onnx``: TensorRT; ``model.int8.cpu.onnx``:
ONNX Runtime's CPU kernels), each with every weighted op in INT8 and with the stem convolution and the
classifier kept in float. It prints, per layout, variant and recipe, the agreement with the FP32 model and
the accuracy drop over the test split (min / median over seeds, in images and points) beside what the
gate allows, and how many seeds the gate passes. The recipes:

- demo: ``make demo`` (30 epochs, torch's default threads);
- tests: the test suite's model (30 epochs, one torch thread, as tests/conftest.py trains it);
- container: the Docker test's run (10 epochs).

    .venv/bin/python benchmarks/int8_margins.py --seeds 5          # about 30 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

RECIPES: dict[str, tuple[dict[str, Any], int | None]] = {  # TrainConfig fields, torch threads (None: default)
    "demo": ({}, None),
    "tests": ({}, 1),
    "container": ({"epochs": 10}, None),
}


def trained_run(root: Path, recipe: str, seed: int) -> Any:
    import torch

    from bninception.core.rundir import RunDir
    from bninception.export.stages import export_stage, fold_stage
    from bninception.model.config import TrainConfig
    from bninception.model.stages import population_stage, train_stage

    fields, threads = RECIPES[recipe]
    default_threads = torch.get_num_threads()
    torch.set_num_threads(threads or default_threads)
    try:
        run = RunDir(root / f"{recipe}-seed{seed}")
        train_stage(run, TrainConfig(**{**fields, "seed": seed}), progress=False)
        population_stage(run)
        export_stage(run)
        fold_stage(run)
    finally:
        torch.set_num_threads(default_threads)
    return run


def measure(run: Any) -> dict[str, dict[str, Any]]:
    """Comparison of each layout and variant with the folded FP32 model on the test split."""
    from bninception.calibrate.evaluate import evaluation_set, run_models
    from bninception.calibrate.qdq import CPU, TENSORRT, cpu_ranges, edge_ops, quantize, symmetric
    from bninception.calibrate.stages import DEFAULT_METHOD, DEFAULT_PERCENTILE, DEFAULT_SAMPLES, calibrate
    from bninception.core import layout, metadata
    from bninception.core.gates import compare
    from bninception.export.onnx_io import load_onnx
    from bninception.model.data import load_run_bundle

    model = load_onnx(run.path(layout.FOLDED))
    bundle = load_run_bundle(run)
    calib = calibrate(bundle, model, run.sha256(layout.FOLDED), DEFAULT_METHOD, DEFAULT_SAMPLES,
                      DEFAULT_PERCENTILE)
    edges = edge_ops(model)
    candidates = {}
    for variant, keep in (("all INT8", ()), ("stem+classifier float", edges)):
        candidates[f"tensorrt|{variant}"] = quantize(model, symmetric(calib.amax), TENSORRT, keep)
        candidates[f"cpu|{variant}"] = quantize(model, cpu_ranges(calib.minmax, calib.minimum), CPU, keep)
    images = evaluation_set(bundle, metadata.read(model, layout.FOLDED).preprocess)
    out, labels = run_models({"fp32": model, **candidates}, images)
    return {name: compare(out["fp32"], out[name], images.source, labels).to_dict() for name in candidates}


def summarize(results: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    from bninception.core.gates import GATES, Comparison, allowed_disagreements, allowed_loss

    gate = GATES["int8"]
    lines = ["| layout | variant | recipe | seeds | agreement % min / median | disagree (images) max / allowed | "
             "drop points max / median | net loss (images) max / allowed | gate passes | percentage gate passes |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    names = sorted({name for per_seed in results.values() for name in per_seed})
    for name in names:
        layout_name, variant = name.split("|")
        for recipe in RECIPES:
            rows = [Comparison.from_dict(per_seed[name]) for key, per_seed in results.items()
                    if key.startswith(f"{recipe}-") and name in per_seed]
            if not rows:
                continue
            agree = [100 * r.top1_agreement for r in rows]
            drops = [r.accuracy_drop_points or 0.0 for r in rows]
            worst_d = max(rows, key=lambda r: r.disagreements or 0)
            worst_l = max(rows, key=lambda r: (r.lost or 0) - (r.gained or 0))
            allowed_d = allowed_disagreements(worst_d.samples, 1 - (gate.min_agreement or 1))
            allowed_l = allowed_loss(worst_l.samples, gate.max_drop_points or 0, (worst_l.lost or 0) +
                                     (worst_l.gained or 0))
            passes = sum(not gate.failures(r) for r in rows)
            by_percent = sum(r.top1_agreement >= (gate.min_agreement or 0) and (r.accuracy_drop_points or 0) <=
                             (gate.max_drop_points or 0) + 1e-9 for r in rows)  # the gate before it counted images
            lines.append(f"| {layout_name} | {variant} | {recipe} | {len(rows)} | {min(agree):.2f} / "
                         f"{statistics.median(agree):.2f} | {worst_d.disagreements} / {allowed_d} | {max(drops):.2f} / "
                         f"{statistics.median(drops):.2f} | {(worst_l.lost or 0) - (worst_l.gained or 0)} / "
                         f"{allowed_l} | {passes} of {len(rows)} | {by_percent} of {len(rows)} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5, help="training seeds per recipe (0..N-1)")
    parser.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated: " + ", ".join(RECIPES))
    parser.add_argument("--out", type=Path, default=Path("runs/int8-margins"), help="run folders (cached)")
    parser.add_argument("--summary", action="store_true", help="print the table of the results already measured")
    args = parser.parse_args()
    results_path = args.out / "results.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.is_file() else {}
    for recipe in [] if args.summary else args.recipes.split(","):
        for seed in range(args.seeds):
            key = f"{recipe}-seed{seed}"
            started = time.monotonic()
            run = trained_run(args.out, recipe, seed)
            results[key] = measure(run)
            results_path.write_text(json.dumps(results, indent=1))
            print(f"{key}: {time.monotonic() - started:.0f} s", flush=True)
    print("\n".join(summarize(results)))


if __name__ == "__main__":
    main()

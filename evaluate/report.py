"""``report.md`` + ``report.json`` + figures for a run, from the files its stages left; a missing piece is a line."""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Any

from bninception.core import layout
from bninception.core.errors import BninceptionError
from bninception.core.files import atomic_write_json, atomic_write_text, parse_json
from bninception.core.rundir import RunDir
from bninception.core.stage import Done, StageResult, StageSpec, run_stage
from bninception.evaluate.tables import pct, render

log = logging.getLogger(__name__)

REPORT_FORMAT = "bninception-report/1"
TRAINING_PNG = "training_curves.png"
BN_STATS_PNG = "bn_statistics.png"
ACCURACY_PNG = "validate_accuracy.png"
SOURCES = (layout.METRICS, layout.VALIDATE_JSON, layout.BENCH_JSON, layout.FOLD_REPORT, layout.CALIBRATION)
FIGURES = (TRAINING_PNG, BN_STATS_PNG, ACCURACY_PNG)


def _read_json(run: RunDir, name: str) -> dict[str, Any] | None:
    path = run.path(name)
    if not path.is_file():
        return None
    try:
        data = parse_json(path.read_bytes(), path)
    except (OSError, BninceptionError) as exc:
        log.warning("report: %s is not readable (%s); left out", path, exc)
        return None
    return data if isinstance(data, dict) else None


def _figure(figures: list[Path], draw: Any, alt: str, path: Path) -> list[str]:
    """Draw one figure at ``path`` (``draw(path)``): its Markdown line, or why it was not drawn."""
    try:
        figures.append(draw(path))
    except (BninceptionError, KeyError, TypeError, ValueError) as exc:
        path.unlink(missing_ok=True)  # an older figure would not match the numbers
        return [f"(figure {path.name} not drawn: {exc})"]
    return [f"![{alt}]({path.name})"]


# -- sections ------------------------------------------------------------------------------------
def _training_section(metrics: dict[str, Any] | None, run: RunDir, figures: list[Path]) -> list[str]:
    lines = ["## Training", ""]
    train = (metrics or {}).get("train")
    if not train:
        return [*lines, "No training record (imported weights, or `bninception train` not run).", ""]
    cfg = train.get("config", {})
    params = train.get("parameters")
    lines.append(f"Data `{cfg.get('data', '?')}` at {cfg.get('image_size', '?')} px, width "
                 f"{cfg.get('width', '?')}, {cfg.get('epochs', '?')} epochs, learning rate "
                 f"{cfg.get('base_lr', '?')} x {cfg.get('lr_scale', '?')} (BN-x{cfg.get('lr_scale', 0):g}), "
                 f"{f'{params:,}' if isinstance(params, int) else '?'} parameters, "
                 f"{float(train.get('seconds', 0)):.1f} s.")
    lines.append(f"Validation top-1 {pct(train.get('val_accuracy'))}; test top-1 with the EMA statistics "
                 f"{pct(train.get('test_accuracy_ema'))}.")
    history = train.get("history") or []
    if history:
        from bninception.evaluate.plots import training_curves_plot

        lines += ["", *_figure(figures, functools.partial(training_curves_plot, history), "training curves",
                               run.path(TRAINING_PNG))]
    return [*lines, ""]


def _population_section(metrics: dict[str, Any] | None, run: RunDir, figures: list[Path]) -> list[str]:
    lines = ["## Population statistics (Algorithm 2) vs EMA running statistics", ""]
    pop = (metrics or {}).get("population")
    if not pop:
        return [*lines, "No population record (`bninception population` not run, or imported weights).", ""]
    diffs = pop.get("layer_differences") or {}
    lines.append(f"{pop.get('batches', '?')} training mini-batches of {pop.get('batch_size', '?')}; "
                 f"test top-1 with EMA statistics {pct(pop.get('test_accuracy_ema'))}, "
                 f"with population statistics {pct(pop.get('test_accuracy_population'))}.")
    if diffs:
        worst_mean = max(diffs.items(), key=lambda kv: kv[1].get("mean_rel_diff", 0.0))
        worst_var = max(diffs.items(), key=lambda kv: kv[1].get("var_rel_diff", 0.0))
        lines.append(f"Across {len(diffs)} BN layers the largest relative difference of the mean is "
                     f"{worst_mean[1].get('mean_rel_diff', 0.0):.3g} (`{worst_mean[0]}`), of the variance "
                     f"{worst_var[1].get('var_rel_diff', 0.0):.3g} (`{worst_var[0]}`).")
        from bninception.evaluate.plots import bn_statistics_plot

        lines += ["", *_figure(figures, functools.partial(bn_statistics_plot, diffs),
                               "EMA vs population statistics per BN layer", run.path(BN_STATS_PNG))]
    return [*lines, ""]


def _fold_section(fold: dict[str, Any] | None) -> list[str]:
    lines = ["## BatchNorm folding (model.onnx -> model.folded.onnx)", ""]
    if not fold:
        return [*lines, "No fold report (`fold_report.json`): `bninception fold` not run.", ""]
    folded = fold.get("folded") or {}
    by_pattern = ", ".join(f"{k}: {v}" for k, v in folded.items() if v) or "none"
    lines += [*render(["", "before", "after"], [
        ["BatchNormalization nodes", fold.get("bn_before", "?"), fold.get("bn_after", "?")],
        ["nodes", fold.get("nodes_before", "?"), fold.get("nodes_after", "?")]], markdown=True), "",
              f"Folded {fold.get('folded_total', sum(v for v in folded.values() if isinstance(v, int)))} "
              f"BN nodes ({by_pattern})."]
    for item in fold.get("left") or []:
        lines.append(f"- left `{item.get('node', '?')}`: {item.get('reason', '?')}")
    parity = fold.get("parity") or {}
    if parity.get("max_abs_diff") is not None:
        lines.append(f"Fold parity (folded vs model.onnx, ONNX Runtime): max abs logit diff "
                     f"{float(parity['max_abs_diff']):.3g}.")
    return [*lines, ""]


def calibration_summary(calibration: dict[str, Any]) -> dict[str, Any]:
    """Scalar settings as they are; lists and tables as counts."""
    summary: dict[str, Any] = {}
    for key, value in calibration.items():
        if isinstance(value, (str, int, float, bool)) or value is None:
            summary[key] = value
        elif isinstance(value, (list, dict)):
            summary[key] = f"{len(value)} entries"
    return summary


def _calibration_section(calibration: dict[str, Any] | None) -> list[str]:
    if not calibration:
        return []
    rows = [[k, v] for k, v in calibration_summary(calibration).items()]
    return ["## INT8 calibration", "", *render(["setting", "value"], rows, markdown=True), ""]


def _validate_section(validate: dict[str, Any] | None, run: RunDir, figures: list[Path]) -> list[str]:
    lines = ["## Validation (parity gates)", ""]
    if not validate:
        return [*lines, "Not validated yet: run `bninception validate`.", ""]
    from bninception.evaluate.validate import ValidationReport

    report = ValidationReport.from_dict(validate)
    from bninception.evaluate.plots import accuracy_plot

    lines += [f"**Overall: {report.verdict()}**", "", report.table(markdown=True),
              *_figure(figures, functools.partial(accuracy_plot, validate), "accuracy and agreement per artifact",
                       run.path(ACCURACY_PNG))]
    gates = validate.get("gates") or {}
    if gates:
        lines += ["", "Gates (docs/DESIGN.md): " + "; ".join(f"{p.upper()}: {g.get('text', '')}"
                                                         for p, g in gates.items()) + "."]
    return [*lines, ""]


def _bench_section(bench: dict[str, Any] | None, run: RunDir, figures: list[Path]) -> list[str]:
    lines = ["## Benchmark", ""]
    if not bench:
        return [*lines, "Not benchmarked yet: run `bninception bench`.", ""]
    from bninception.evaluate.bench import BenchReport

    report = BenchReport.from_dict(bench)
    settings = bench.get("settings", {})
    lines += [f"Latency per call (one batch) after warm-up, at least {settings.get('min_reps', '?')} calls "
              f"and {settings.get('min_seconds', '?')} s per cell; random inputs. ONNX Runtime on CPU with "
              f"all graph optimizations (as served) unless marked `opt off`.", "",
              report.table(markdown=True)]
    lines.append("")
    if run.path(layout.BENCH_PNG).is_file():  # bench draws it (and owns it in the manifest)
        lines.append(f"![throughput vs batch size]({layout.BENCH_PNG})")
    else:
        from bninception.evaluate.plots import throughput_plot

        lines += _figure(figures, functools.partial(throughput_plot, bench), "throughput vs batch size",
                         run.path(layout.BENCH_PNG))
    return [*lines, ""]


def _artifacts_section(run: RunDir) -> tuple[list[str], list[dict[str, Any]]]:
    manifest = run.manifest()
    rows = [{"name": name, "bytes": info.get("bytes"), "sha256": info.get("sha256"),
             "stage": info.get("stage")} for name, info in sorted(manifest.get("artifacts", {}).items())]
    lines = ["## Artifacts", "", *render(["file", "size", "sha256", "made by"], [
        [r["name"], _size(r["bytes"]), f"`{str(r['sha256'])[:12]}`", r["stage"]] for r in rows], markdown=True)]
    stages = manifest.get("stages", {})
    if stages:
        lines += ["", "Stage times: " + ", ".join(f"{name} {float(rec.get('seconds', 0)):.1f} s"
                                                  for name, rec in stages.items()) + "."]
    return [*lines, ""], rows


def _size(n: Any) -> str:
    if not isinstance(n, int):
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return "?"


def _engines_section(validate: dict[str, Any] | None) -> list[str]:
    skipped = [s for s in (validate or {}).get("skipped", []) if s.get("kind") == "tensorrt"]
    if not skipped:
        return []
    return ["## TensorRT", "", *(f"- {s['reason']}" for s in skipped), ""]


# -- entry points --------------------------------------------------------------------------------
def write_report(run: RunDir) -> list[Path]:
    """Write ``report.md``, ``report.json`` and the PNG figures into ``run``; return their paths."""
    if not run.root.is_dir():
        raise BninceptionError(f"run directory {run.root} does not exist")
    metrics = _read_json(run, layout.METRICS)
    validate = _read_json(run, layout.VALIDATE_JSON)
    bench = _read_json(run, layout.BENCH_JSON)
    fold = _read_json(run, layout.FOLD_REPORT)
    calibration = _read_json(run, layout.CALIBRATION)
    figures: list[Path] = []
    artifacts_lines, artifacts = _artifacts_section(run)
    overall = None if not validate else bool(validate.get("passed"))
    md = [f"# BN-Inception deployment report: `{run.root.name}`", "",
          f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by `bninception report`. "
          f"Validation: **{'not run' if overall is None else ('PASS' if overall else 'FAIL')}**.", ""]
    md += _training_section(metrics, run, figures)
    md += _population_section(metrics, run, figures)
    md += _fold_section(fold)
    md += _calibration_section(calibration)
    md += _validate_section(validate, run, figures)
    md += _engines_section(validate)
    md += _bench_section(bench, run, figures)
    md += artifacts_lines
    train = (metrics or {}).get("train") or {}
    population = (metrics or {}).get("population") or {}
    document = {
        "format": REPORT_FORMAT, "run": str(run.root), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "passed": overall,
        "training": train or None,
        "population": population, "fold": fold,
        "calibration": calibration_summary(calibration) if calibration else None,
        "validate": validate, "bench": bench, "artifacts": artifacts,
        "figures": [p.name for p in figures],
    }
    atomic_write_json(run.path(layout.REPORT_JSON), document)
    atomic_write_text(run.path(layout.REPORT_MD), "\n".join(md).rstrip() + "\n")
    return [run.path(layout.REPORT_MD), run.path(layout.REPORT_JSON), *figures]


def report_stage(run: RunDir, force: bool = False) -> StageResult:
    """:func:`write_report` as a pipeline stage: skipped when its source files are unchanged."""
    spec = StageSpec("report", {}, [name for name in SOURCES if run.path(name).is_file()],
                     [layout.REPORT_MD, layout.REPORT_JSON], optional_outputs=FIGURES)

    def body() -> Done:
        paths = write_report(run)
        return Done({"files": [str(p) for p in paths]}, paths, f"wrote {run.path(layout.REPORT_MD)}")

    return run_stage(run, spec, body, force=force)

"""bench: adaptive but bounded repetitions, every backend timed, machine recorded, plot written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from run_helpers import copy_run

from bninception.core.errors import BninceptionError
from bninception.core.rundir import RunDir
from bninception.evaluate.bench import (
    BenchReport,
    BenchSettings,
    bench_run,
    machine_info,
    parse_batch_sizes,
    time_calls,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_time_calls_respects_min_and_max_reps() -> None:
    calls = []
    fast = BenchSettings(min_seconds=0.01, max_seconds=0.02, warmup_seconds=0.0, min_reps=25, max_reps=40)
    latencies, warm = time_calls(lambda: calls.append(1), fast)
    assert 25 <= len(latencies) <= 40 and warm == 2 and len(calls) == len(latencies) + warm
    capped = BenchSettings(min_seconds=5.0, max_seconds=5.0, warmup_seconds=0.0, min_reps=1, max_reps=7)
    assert len(time_calls(lambda: None, capped)[0]) == 7


def test_slow_call_is_bounded_by_max_seconds() -> None:
    import time

    slow = BenchSettings(min_seconds=0.01, max_seconds=0.05, warmup_seconds=0.0, min_reps=100, max_reps=1000)
    latencies, _ = time_calls(lambda: time.sleep(0.02), slow)
    assert 3 <= len(latencies) < 100


def test_parse_batch_sizes() -> None:
    assert parse_batch_sizes("1, 8,32") == (1, 8, 32)
    for bad in ("", "1,x", "0", "8,-1"):
        with pytest.raises(BninceptionError, match="--batch-sizes"):
            parse_batch_sizes(bad)
    with pytest.raises(BninceptionError, match="min_seconds"):
        BenchSettings(min_seconds=2.0, max_seconds=1.0)


def test_machine_info_names_the_cpu() -> None:
    info = machine_info()
    assert info["cpu"] and info["cores"] >= 1 and info["cores_available"] >= 1
    assert info["versions"]["torch"] and info["versions"]["onnxruntime"]


@pytest.fixture(scope="module")
def bench_report(onnx_run: RunDir, tmp_path_factory: pytest.TempPathFactory) -> tuple[RunDir, BenchReport]:
    run = copy_run(onnx_run, tmp_path_factory.mktemp("bench") / "run")
    return run, bench_run(run, batch_sizes=(1, 4), min_seconds=0.02, max_seconds=0.2)


def test_bench_times_every_backend(bench_report: tuple[RunDir, BenchReport]) -> None:
    run, report = bench_report
    names = report.backends()
    assert names[0] == "PyTorch eager"
    assert {"ORT FP32 (BN kept)", "ORT FP32 folded", "ORT FP32 (BN kept), opt off"} <= set(names)
    assert len(report.results) == 2 * len(names)
    for r in report.results:
        assert r.error is None, r.error
        assert r.reps >= 3 and 0 < r.p50_ms <= r.p90_ms <= r.p99_ms  # type: ignore[operator]
        assert r.images_per_second == pytest.approx(r.batch_size / (r.mean_ms / 1000.0))  # type: ignore[operator]
    saved = json.loads(run.path("bench.json").read_text())
    assert BenchReport.from_dict(saved).results == report.results
    assert saved["machine"]["cpu"] and saved["settings"]["batch_sizes"] == [1, 4]
    assert run.path("bench_throughput.png").read_bytes()[:8] == PNG_SIGNATURE
    table = report.table()
    assert "p50 ms" in table and "machine:" in table and "TensorRT" in table


def test_bench_cli_json(bench_report: tuple[RunDir, BenchReport], tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    from bninception.cli import main

    run = copy_run(bench_report[0], tmp_path / "cli")
    for name in ("model.folded.onnx", "model.fp16.onnx", "model.int8.onnx", "model.int8.cpu.onnx"):
        run.path(name).unlink(missing_ok=True)
    code = main(["bench", "--run", str(run.root), "--batch-sizes", "2", "--min-seconds", "0.01",
                 "--max-seconds", "0.05", "--served-only", "--no-engines", "--json"])
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    assert {r["batch_size"] for r in document["results"]} == {2}
    assert [r["artifact"] for r in document["results"]] == ["model.pt", "model.onnx"]  # no "opt off" rows
    assert main(["bench", "--run", str(run.root), "--batch-sizes", "1,zero"]) == 2

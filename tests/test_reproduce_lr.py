"""Figures 2-3 at small scale: the table, CSV and plot from real (short) BN-Inception runs."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from bninception.cli import main
from bninception.core.errors import BninceptionError
from bninception.reproduce.lr import SLOW_DECAY, LrConfig, LrResult, RunCurve, paper_runs, run_lr
from bninception.reproduce.outputs import lr_csv, lr_markdown, write_lr

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_runs_follow_the_paper_recipes() -> None:
    runs = {r.name: r.overrides for r in paper_runs()}
    assert list(runs) == ["Inception", "BN-Baseline", "BN-x5", "BN-x30", "BN-x5-Sigmoid"]
    assert runs["Inception"]["batchnorm"] is False and runs["Inception"]["lr_scale"] == 1.0
    assert runs["BN-Baseline"] == {k: v for k, v in runs["Inception"].items() if k != "batchnorm"}
    assert runs["Inception"]["lr_decay"] == pytest.approx(SLOW_DECAY)
    assert math.isclose(SLOW_DECAY ** 6, 0.9)  # the BN recipe decays 6x faster
    assert runs["BN-x30"] == {"lr_scale": 30.0}
    assert runs["BN-x5-Sigmoid"] == {"lr_scale": 5.0, "activation": "sigmoid"}


def test_table_counts_steps_to_the_no_bn_best() -> None:
    cfg = LrConfig(epochs=3, runs=("Inception", "BN-x5", "BN-x30"))
    curves = [RunCurve("Inception", 0.01, [17, 34, 51], [0.1, 0.4, 0.6], [2.3, 2.0, 1.5], 0.58),
              RunCurve("BN-x5", 0.05, [17, 34, 51], [0.5, 0.7, 0.9], [1.5, 0.9, 0.3], 0.91),
              RunCurve("BN-x30", 0.3, [17], [0.2], [9.0], diverged="training diverged at epoch 2")]
    result = LrResult(cfg, curves)
    assert result.target == 0.6
    rows = {r["run"]: r for r in result.rows()}
    assert rows["Inception"]["steps_to_inception_best"] == 51
    assert rows["BN-x5"]["steps_to_inception_best"] == 34
    assert rows["BN-x30"]["steps_to_inception_best"] is None
    assert rows["BN-x5"]["steps_to_90%"] == 51 and rows["BN-x5"]["steps_to_95%"] is None
    table = lr_markdown(result)
    assert "| BN-x5 | 0.05 | 34 | 51 | never | 90.0% | 91.0% | 0.300 | 2.1M | 73.0% |" in table
    assert "| BN-x30 | 0.3 | never (diverged) | never (diverged) | never (diverged) | 20.0% | n/a |" in table
    assert "reached 60.0% at best" in table
    lines = lr_csv(result).splitlines()
    assert lines[0] == "run,lr,epoch,step,val_accuracy,train_loss"
    assert lines[2] == "Inception,0.01,2,34,0.400000,2.000000" and len(lines) == 1 + 3 + 3 + 1


def test_config_rejects_unknown_or_missing_runs() -> None:
    with pytest.raises(BninceptionError, match="BN-x7"):
        LrConfig(runs=("Inception", "BN-x7"))
    with pytest.raises(BninceptionError, match="must include 'Inception'"):
        LrConfig(runs=("BN-x5",))
    with pytest.raises(BninceptionError, match="image_size"):
        LrConfig(image_size=16)
    with pytest.raises(BninceptionError, match="width"):
        LrConfig(width=0)
    assert main(["reproduce", "lr", "--runs", "BN-x7", "--out", "/nonexistent/never"]) == 2
    assert main(["reproduce", "lr", "--jobs", "0", "--epochs", "1", "--out", "/nonexistent/never"]) == 2


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_short_lr_run_writes_table_csv_and_plot(tmp_path: Path) -> None:
    cfg = LrConfig(epochs=2, width=0.125, runs=("Inception", "BN-x5"), train_limit=320)
    result = run_lr(cfg)
    assert [c.name for c in result.curves] == ["Inception", "BN-x5"]
    for curve in result.curves:
        assert curve.steps == [5, 10]  # 320 training digits in mini-batches of 64
        assert all(0.0 <= a <= 1.0 for a in curve.val_accuracy)
        assert not math.isnan(curve.test_accuracy) and not curve.diverged
        assert curve.train_loss[0] > 0
    assert result.curves[0].lr == pytest.approx(0.01) and result.curves[1].lr == pytest.approx(0.05)
    assert result.target == max(result.curves[0].val_accuracy)
    # without BN the input-dependent signal vanishes through the depth; with BN it is kept
    no_bn, bn = result.signal["Inception"], result.signal["BN"]
    assert list(no_bn) == ["stem", "3a", "3b", "3c", "4a", "4b", "4c", "4d", "4e", "5a", "5b"]
    assert no_bn["5b"] < 1e-3 * no_bn["3a"]
    assert bn["5b"] > 0.1

    paths = write_lr(result, tmp_path)
    assert [p.name for p in paths] == ["lr.csv", "lr.md", "lr.png"]
    with open(paths[0]) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    assert float(rows[3]["val_accuracy"]) == pytest.approx(result.curves[1].val_accuracy[1], abs=1e-6)
    table = paths[1].read_text()
    for row in result.rows():
        assert f"| {row['run']} | {row['lr']:g} |" in table
        assert f"{100 * row['best_val_accuracy']:.1f}%" in table
    assert f"| Inception | {no_bn['stem']:.2g} |" in table
    assert paths[2].read_bytes()[:8] == PNG_MAGIC and paths[2].stat().st_size > 10_000
    json.dumps(result.summary())  # the --json document is serialisable

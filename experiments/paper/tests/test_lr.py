"""Figures 2-3 at small scale: the table, CSV and plot from real (short) BN-Inception runs."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from bninception.core.errors import BninceptionError
from bninception.model.architecture import GOOGLENET_CONV_BIAS, init_weights
from bninception.model.config import TrainConfig
from bninception.model.train import build_network
from experiments.paper.__main__ import main
from experiments.paper.lr import (
    SLOW_DECAY,
    LrConfig,
    LrResult,
    RunCurve,
    fewer_steps,
    paper_runs,
    run_lr,
)
from experiments.paper.outputs import lr_csv, lr_markdown, write_lr

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_runs_follow_the_paper_recipes() -> None:
    runs = {r.name: r for r in paper_runs()}
    overrides = {name: r.overrides for name, r in runs.items()}
    assert list(runs) == ["Inception", "BN-Baseline", "BN-x5", "BN-x30", "BN-x5-Sigmoid", "Inception-Sigmoid"]
    assert overrides["Inception"]["batchnorm"] is False and overrides["Inception"]["lr_scale"] == 1.0
    assert overrides["BN-Baseline"] == {k: v for k, v in overrides["Inception"].items() if k != "batchnorm"}
    assert overrides["Inception-Sigmoid"] == {**overrides["Inception"], "activation": "sigmoid"}
    assert overrides["Inception"]["lr_decay"] == pytest.approx(SLOW_DECAY)
    assert math.isclose(SLOW_DECAY ** 6, 0.9)  # the BN recipe decays 6x faster
    assert overrides["BN-x30"] == {"lr_scale": 30.0}
    assert overrides["BN-x5-Sigmoid"] == {"lr_scale": 5.0, "activation": "sigmoid"}
    # the paper's Figure 3: BN-x5 needs 14x fewer steps than Inception to reach its 72.2%
    assert int(fewer_steps(31.0, runs["BN-x5"].paper_steps) or 0) == 14
    cfg = LrConfig(epochs=7, no_bn_epochs=11)
    assert [cfg.epochs_of(r) for r in paper_runs()] == [11, 7, 7, 7, 7, 11]


def test_xavier_init_is_googlenets_and_shared_by_every_network() -> None:
    from bninception.model.data import load_bundle

    bundle = load_bundle("digits", 32, 0)
    base = TrainConfig(width=0.125, seed=3, init="xavier")
    no_bn = build_network(replace(base, batchnorm=False, dropout=0.4), bundle).requires_grad_(False)
    bn_sigmoid = build_network(replace(base, activation="sigmoid"), bundle).requires_grad_(False)
    layers = [m for m in no_bn.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert len(layers) > 60
    for layer in layers:
        fan_in = layer.weight[0].numel()
        assert float(layer.weight.abs().max()) <= math.sqrt(3 / fan_in)  # Caffe's xavier: U(+-sqrt(3/n))
        expected_bias = GOOGLENET_CONV_BIAS if isinstance(layer, nn.Conv2d) else 0.0
        assert layer.bias is not None and bool((layer.bias == expected_bias).all())
    widest = max(layers, key=lambda m: m.weight.numel()).weight
    assert float(widest.var()) == pytest.approx(1 / widest[0].numel(), rel=0.05)  # variance 1 / fan_in
    # same seed: identical conv and classifier weights with and without BN, relu or sigmoid
    weights = {k: v for k, v in bn_sigmoid.state_dict().items() if k.endswith("conv.weight") or "last_linear" in k}
    assert all(torch.equal(v, no_bn.state_dict()[k]) for k, v in weights.items()) and len(weights) == len(layers) + 1
    bns = [m for m in bn_sigmoid.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in bns)
    with pytest.raises(BninceptionError, match="init must be"):
        init_weights(no_bn, "he")  # type: ignore[arg-type]


def test_table_counts_steps_to_the_no_bn_best() -> None:
    cfg = LrConfig(epochs=3, runs=("Inception", "BN-x5", "BN-x30"))
    curves = [RunCurve("Inception", 0.01, [17, 34, 51, 68], [0.1, 0.4, 0.6, 0.5], [2.3, 2.0, 1.5, 1.4], 0.58),
              RunCurve("BN-x5", 0.05, [17, 34, 51], [0.5, 0.7, 0.9], [1.5, 0.9, 0.3], 0.91),
              RunCurve("BN-x30", 0.3, [17], [0.2], [9.0], diverged="training diverged at epoch 2")]
    result = LrResult(cfg, curves)
    assert result.target == 0.6
    rows = {r["run"]: r for r in result.rows()}
    assert rows["Inception"]["steps_to_inception_best"] == 51
    assert rows["Inception"]["fewer_steps_to_inception_best"] == 1.0
    assert rows["BN-x5"]["steps_to_inception_best"] == 34 and rows["BN-x5"]["fewer_steps_to_inception_best"] == 1.5
    assert rows["BN-x30"]["steps_to_inception_best"] is None
    assert rows["BN-x30"]["fewer_steps_to_inception_best"] is None
    assert rows["BN-x5"]["steps_to_90%"] == 51 and rows["BN-x5"]["fewer_steps_to_90%"] is None  # Inception: never
    assert rows["BN-x5"]["steps_to_95%"] is None
    table = lr_markdown(result)
    assert "| BN-x5 | 0.05 | 34 (1.5x) | 51 | never | 90.0% | 91.0% | 0.300 | 2.1M (14.8x) | 73.0% |" in table
    assert "| BN-x30 | 0.3 | never (diverged) | never (diverged) | never (diverged) | 20.0% | n/a |" in table
    assert "| Inception | 0.01 | 51 (1.0x) | never | never | 60.0% | 58.0% | 1.400 | 31.0M (1.0x) | 72.2% |" in table
    assert "reached 60.0% at best, first after 51 steps" in table
    assert "| steps to Inception's best (60.0%) |" in table
    lines = lr_csv(result).splitlines()
    assert lines[0] == "run,lr,epoch,step,val_accuracy,train_loss"
    assert lines[2] == "Inception,0.01,2,34,0.400000,2.000000" and len(lines) == 1 + 4 + 3 + 1


def test_config_rejects_unknown_or_missing_runs() -> None:
    with pytest.raises(BninceptionError, match="BN-x7"):
        LrConfig(runs=("Inception", "BN-x7"))
    with pytest.raises(BninceptionError, match="must include 'Inception'"):
        LrConfig(runs=("BN-x5",))
    with pytest.raises(BninceptionError, match="image_size"):
        LrConfig(image_size=16)
    with pytest.raises(BninceptionError, match="width"):
        LrConfig(width=0)
    with pytest.raises(BninceptionError, match="init"):
        LrConfig(init="he")
    with pytest.raises(BninceptionError, match="epochs"):
        LrConfig(no_bn_epochs=0)
    assert main(["lr", "--runs", "BN-x7", "--out", "/nonexistent/never"]) == 2
    assert main(["lr", "--jobs", "0", "--epochs", "1", "--out", "/nonexistent/never"]) == 2


@pytest.mark.slow
def test_short_lr_run_baseline_learns_and_bn_gets_there_in_fewer_steps(tmp_path: Path) -> None:
    # the first 60 / 10 epochs of the real experiment (the rate schedules are per epoch)
    cfg = LrConfig(epochs=10, no_bn_epochs=60, runs=("Inception", "BN-x5"))
    result = run_lr(cfg, jobs=2)
    inception, bn_x5 = result.curves
    assert [c.name for c in result.curves] == ["Inception", "BN-x5"]
    assert inception.steps[:2] == [17, 34] and len(inception.steps) == 60 and len(bn_x5.steps) == 10
    assert inception.lr == pytest.approx(0.01) and bn_x5.lr == pytest.approx(0.05)
    assert not inception.diverged and not bn_x5.diverged
    # the baseline learns: well above chance (10%), its training loss well below ln 10
    assert result.target == inception.best > 0.3
    assert inception.train_loss[-1] < 0.8 * math.log(10) and inception.test_accuracy > 0.25
    # steps to its best are not trivial, and BN-x5 gets there several times sooner
    rows = {r["run"]: r for r in result.rows()}
    assert rows["Inception"]["steps_to_inception_best"] >= 20 * inception.steps[0]
    assert rows["BN-x5"]["steps_to_inception_best"] is not None
    assert rows["BN-x5"]["fewer_steps_to_inception_best"] > 5
    # at initialisation the xavier no-BN network keeps far more input signal than PyTorch's init
    xavier, bn, pytorch = (result.signal[k] for k in ("Inception", "BN", "Inception, PyTorch init"))
    assert list(xavier) == ["stem", "3a", "3b", "3c", "4a", "4b", "4c", "4d", "4e", "5a", "5b"]
    assert pytorch["5b"] < 1e-3 * pytorch["3a"] and xavier["5b"] > 100 * pytorch["5b"]
    assert bn["5b"] > 0.1

    paths = write_lr(result, tmp_path)
    assert [p.name for p in paths] == ["lr.csv", "lr.md", "lr.png"]
    with open(paths[0]) as handle:
        rows_csv = list(csv.DictReader(handle))
    assert len(rows_csv) == 60 + 10
    assert float(rows_csv[-1]["val_accuracy"]) == pytest.approx(bn_x5.val_accuracy[-1], abs=1e-6)
    table = paths[1].read_text()
    for row in result.rows():
        assert f"| {row['run']} | {row['lr']:g} | {row['steps_to_inception_best']} (" in table
        assert f"{100 * row['best_val_accuracy']:.1f}%" in table
    assert f"| Inception | {xavier['stem']:.2g} |" in table
    assert paths[2].read_bytes()[:8] == PNG_MAGIC and paths[2].stat().st_size > 10_000
    json.dumps(result.summary())  # the --json document is serialisable


def test_lr_settings_are_bounded_by_their_fields() -> None:
    from bninception.core.errors import BninceptionError

    with pytest.raises(BninceptionError, match=r"lr settings out of range: need width <= 4"):
        LrConfig(width=5)

"""Figure 1 at small scale: the MLP, Algorithm 2 statistics, and BN's qualitative effect."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bninception.core.errors import BninceptionError
from experiments.paper.__main__ import main
from experiments.paper.fig1 import (
    Fig1Config,
    batch_order,
    build_mlp,
    load_digits_arrays,
    run_fig1,
    set_population_statistics,
)
from experiments.paper.outputs import write_fig1

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_both_networks_start_from_the_same_weights_with_bn_before_the_sigmoid() -> None:
    cfg = Fig1Config(init_std=0.05)
    plain, bn = build_mlp(cfg, 64, 10, batchnorm=False), build_mlp(cfg, 64, 10, batchnorm=True)
    for a, b in zip(plain.linears, bn.linears, strict=True):
        assert torch.equal(a.weight, b.weight)
        assert 0.04 < float(a.weight.detach().std()) < 0.06
        assert b.bias is None and a.bias is not None and not a.bias.any()
    assert torch.equal(plain.out.weight, bn.out.weight)
    assert all(isinstance(n, nn.BatchNorm1d) for n in bn.norms)
    assert all(isinstance(n, nn.Identity) for n in plain.norms)
    # the tracked value is the last BN's output (the sigmoid input), not the linear output
    x = torch.randn(32, 64)
    bn.train()
    _, pre = bn.forward_with_last_input(x)
    assert torch.allclose(pre.mean(0), bn.norms[-1].bias.detach(), atol=1e-5)


def test_population_statistics_follow_algorithm_2() -> None:
    cfg = Fig1Config()
    model = build_mlp(cfg, 64, 10, batchnorm=True)
    x = torch.rand(185, 64)  # 3 full batches of 60, the last 5 rows are not used
    set_population_statistics(model, x, 60)
    linear_out = model.linears[0](x[:180]).detach().double().reshape(3, 60, -1)
    expected_mean = linear_out.mean(1).mean(0)
    expected_var = 60 / 59 * linear_out.var(1, unbiased=False).mean(0)
    norm = model.norms[0]
    assert not model.training
    assert torch.allclose(norm.running_mean.double(), expected_mean, atol=1e-5)
    assert torch.allclose(norm.running_var.double(), expected_var, rtol=1e-4)


def test_batch_order_is_a_fresh_full_shuffle_each_epoch() -> None:
    cfg = Fig1Config(steps=40, batch_size=60)
    order = batch_order(1437, cfg)
    assert order.shape == (40, 60)
    epoch = order[:23].ravel()  # 1437 // 60 = 23 steps per epoch
    assert len(np.unique(epoch)) == epoch.size
    assert not np.array_equal(order[0], order[23])
    assert np.array_equal(order, batch_order(1437, cfg))


def test_digits_are_64_inputs_in_unit_range() -> None:
    train_x, train_y, test_x, test_y = load_digits_arrays(0)
    assert train_x.shape[1] == test_x.shape[1] == 64
    assert len(train_x) + len(test_x) == 1797 and len(test_x) == len(test_y) == 359
    assert float(train_x.min()) == 0.0 and float(train_x.max()) == 1.0
    assert set(train_y.tolist()) == set(range(10))


def test_config_is_validated() -> None:
    with pytest.raises(BninceptionError, match="neuron"):
        Fig1Config(neuron=100)
    with pytest.raises(BninceptionError, match="batch_size"):
        Fig1Config(batch_size=1)


@pytest.fixture
def one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny MLP: one thread is fastest on shared cores
    yield
    torch.set_num_threads(previous)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_short_fig1_shows_bn_trains_faster_with_a_stable_sigmoid_input(tmp_path: Path) -> None:
    cfg = Fig1Config(steps=600, eval_every=100, seed=0)
    result = run_fig1(cfg)
    base, bn = result.baseline, result.batchnorm
    assert base.steps == bn.steps == [0, 100, 200, 300, 400, 500, 600]
    assert base.test_accuracy[0] < 0.2 and bn.test_accuracy[0] < 0.2  # both start at chance
    assert bn.final_accuracy >= base.final_accuracy
    assert bn.final_accuracy > 0.9
    assert bn.percentile_drift() < base.percentile_drift()
    for p15, p50, p85 in base.percentiles + bn.percentiles:
        assert p15 <= p50 <= p85

    paths = write_fig1(result, tmp_path)
    assert [p.name for p in paths] == ["fig1.csv", "fig1a.png", "fig1bc.png"]
    for png in paths[1:]:
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
    with open(paths[0]) as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == base.steps
    assert float(rows[-1]["bn_test_accuracy"]) == pytest.approx(bn.final_accuracy, abs=1e-6)
    assert float(rows[3]["no_bn_p50"]) == pytest.approx(base.percentiles[3][1], abs=1e-6)
    assert not list(tmp_path.glob(".*.tmp"))


def test_cli_fig1_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["fig1", "--steps", "100", "--eval-every", "50", "--out", str(tmp_path),
                 "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["config"]["steps"] == 100
    assert set(summary["final_test_accuracy"]) == {"no_bn", "bn"}
    assert {Path(f).name for f in summary["files"]} == {"fig1.csv", "fig1a.png", "fig1bc.png"}
    assert all(Path(f).is_file() for f in summary["files"])

"""Algorithm 2: population statistics, against numpy's closed form and torch's update_bn."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from bninception.core.errors import BninceptionError
from bninception.model.architecture import ModelConfig, build_model
from bninception.model.data import DigitsDataset
from bninception.model.distributed import DistContext
from bninception.model.population import apply_population_statistics
from bninception.model.train import epoch_order

SINGLE = DistContext(0, 1, torch.device("cpu"))


def random_dataset(n: int, channels: int, size: int, seed: int = 0) -> DigitsDataset:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(n, channels, size, size, generator=generator) * 2 + 0.5
    return DigitsDataset(images, np.zeros(n, dtype=np.int64), augment=False, seed=seed)


def test_conv_bn_matches_numpy_closed_form() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, padding=1, bias=False)
    model = nn.Sequential(conv, nn.BatchNorm2d(5))
    dataset = random_dataset(40, 3, 6)
    batches, batch_size = 4, 8
    apply_population_statistics(model, dataset, batches=batches, batch_size=batch_size, seed=3, ctx=SINGLE)

    order = epoch_order(len(dataset), 3, 0, SINGLE)[: batches * batch_size]
    with torch.no_grad():
        outputs = [conv(dataset.images[order[i:i + batch_size]]).double().numpy()
                   for i in range(0, len(order), batch_size)]
    m = batch_size * 6 * 6
    expected_mean = np.mean([o.mean(axis=(0, 2, 3)) for o in outputs], axis=0)
    expected_var = np.mean([o.var(axis=(0, 2, 3)) for o in outputs], axis=0) * m / (m - 1)
    bn = model[1]
    np.testing.assert_allclose(bn.running_mean.numpy(), expected_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.running_var.numpy(), expected_var, rtol=1e-5, atol=1e-6)
    assert not bn.training and not model.training
    # it is the Bessel-corrected average, not the plain one
    assert not np.allclose(bn.running_var.numpy(), expected_var * (m - 1) / m, rtol=1e-7, atol=0)


def test_agrees_with_update_bn_for_equal_batches() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=10, in_channels=1, width=0.125))
    twin = build_model(ModelConfig(num_classes=10, in_channels=1, width=0.125))
    twin.load_state_dict(model.state_dict())
    dataset = random_dataset(96, 1, 32)
    apply_population_statistics(model, dataset, batches=3, batch_size=32, seed=5, ctx=SINGLE)
    order = epoch_order(len(dataset), 5, 0, SINGLE)
    loader = [dataset.images[order[i:i + 32]] for i in range(0, 96, 32)]
    update_bn(loader, twin)  # cumulative average of batch means / unbiased batch variances
    ours = dict(model.named_buffers())
    theirs = dict(twin.named_buffers())
    for name, value in ours.items():
        if name.endswith(("running_mean", "running_var")):
            torch.testing.assert_close(value, theirs[name], rtol=2e-4, atol=2e-5, msg=name)


def test_dropout_stays_off_and_too_small_data_is_refused() -> None:
    model = build_model(ModelConfig(num_classes=10, in_channels=1, width=0.125, dropout=0.5))
    dataset = random_dataset(8, 1, 32)
    calls = []
    model.dropout.register_forward_hook(lambda m, i, o: calls.append(m.training))
    apply_population_statistics(model, dataset, batches=2, batch_size=4, ctx=SINGLE)
    assert calls and not any(calls)
    with pytest.raises(BninceptionError, match="fewer than one batch"):
        apply_population_statistics(model, dataset, batches=2, batch_size=16, ctx=SINGLE)


def test_population_stage_reports_ema_vs_population(demo_run) -> None:  # type: ignore[no-untyped-def]
    metrics = json.loads(demo_run.path("metrics.json").read_text())
    population = metrics["population"]
    assert population["test_accuracy_population"] >= 0.97
    assert population["test_accuracy_ema"] > 0.5
    differences = population["layer_differences"]
    assert len(differences) == 69
    assert all(v["var_rel_diff"] >= 0 for v in differences.values())
    assert any(v["mean_rel_diff"] > 1e-4 for v in differences.values())  # EMA is only an approximation
    assert metrics["train"]["test_accuracy_ema"] >= 0.95

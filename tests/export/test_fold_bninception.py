"""The full-size BN-Inception at 224x224 (1000 classes): every BN folds, parity <= 1e-4 on photographs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from random_bn import save_random_model

from bninception.core.preprocess import Preprocess
from bninception.core.runner import OrtRunner, run_all
from bninception.export.fold import fold_batchnorm
from bninception.export.parity import random_inputs
from bninception.export.to_onnx import export_onnx
from bninception.model.architecture import ModelConfig
from bninception.model.checkpoint import load_model
from bninception.model.photos import sample_photos

pytestmark = pytest.mark.slow
IMAGENET = Preprocess(size=224, resize=256)


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Export once per session: model.pt -> model.onnx -> folded, and inputs (4 photos + 2 random)."""
    root = tmp_path_factory.mktemp("bninception224")
    save_random_model(str(root / "model.pt"), ModelConfig(), IMAGENET, seed=11)
    model, pre, labels, _ = load_model(root / "model.pt")
    export_onnx(model, pre, labels, root / "model.onnx")
    unfolded = onnx.load(str(root / "model.onnx"))
    folded, report = fold_batchnorm(unfolded)
    images = np.concatenate([sample_photos(pre, limit=4), random_inputs((3, 224, 224), 2)])
    with torch.inference_mode():
        reference = model(torch.from_numpy(images)).numpy()
    return {"model": model, "unfolded": unfolded, "folded": folded, "report": report, "images": images,
            "torch": reference, "root": root}


def test_zero_bn_left_and_checker(full: dict) -> None:
    report, folded = full["report"], full["folded"]
    assert report.bn_before == 69 and report.bn_after == 0 and report.folded["Conv"] == 69
    assert not report.left
    assert report.nodes_after == report.nodes_before - 69
    onnx.checker.check_model(folded, full_check=True)
    assert [i.name for i in folded.graph.input] == ["data"]
    assert [o.name for o in folded.graph.output] == ["logits"]
    assert [p.key for p in folded.metadata_props] == [p.key for p in full["unfolded"].metadata_props]
    assert all(n.op_type != "Conv" or len(n.input) == 3 for n in folded.graph.node)


def test_parity_on_photographs_and_random(full: dict) -> None:
    images = full["images"]
    before = run_all(OrtRunner(full["unfolded"], optimization="disable"), images)
    after = run_all(OrtRunner(full["folded"], optimization="disable"), images)
    assert before.shape == (6, 1000)
    assert np.abs(before).max() > 0.1  # a meaningful logit scale, not all zeros
    assert np.abs(after - before).max() <= 1e-4
    assert np.abs(before - full["torch"]).max() <= 1e-4  # export parity vs PyTorch, same inputs
    assert (after.argmax(1) == before.argmax(1)).all()
    assert len(set(after.argmax(1).tolist())) > 1  # photographs give different predictions


def test_folded_model_is_a_fixed_point(full: dict) -> None:
    again, report = fold_batchnorm(full["folded"])
    assert report.folded_total == 0 and again.SerializeToString() == full["folded"].SerializeToString()


def test_written_model_is_smaller(full: dict) -> None:
    root: Path = full["root"]
    assert len(full["folded"].SerializeToString()) < (root / "model.onnx").stat().st_size

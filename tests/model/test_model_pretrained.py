"""Importing pretrainedmodels-layout weights: conv biases absorbed exactly into BN."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from reference_bninception import reference_module
from torch import nn

from bninception.core.errors import BninceptionError
from bninception.core.rundir import RunDir
from bninception.model.checkpoint import load_model
from bninception.model.pretrained import import_pretrainedmodels
from bninception.model.stages import import_weights_stage


@pytest.fixture(scope="module")
def reference_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path]:
    torch.manual_seed(1)
    reference = reference_module().BNInception(num_classes=1000)
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
            elif isinstance(module, nn.Conv2d):
                module.bias.normal_(0, 0.3)  # non-zero conv biases to absorb
    path = tmp_path_factory.mktemp("weights") / "bn_inception.pth"
    torch.save(reference.state_dict(), path)
    return reference.eval(), path


def test_imported_logits_equal_reference(reference_file: tuple[nn.Module, Path]) -> None:
    reference, path = reference_file
    ours = import_pretrainedmodels(path)
    x = torch.rand(2, 3, 224, 224) * 255 - 117
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    assert float((expected - got).abs().max()) <= 1e-5 * max(1.0, float(expected.abs().max()))
    assert all(m.conv.bias is None for m in ours.modules() if hasattr(m, "conv"))


def test_import_stage_records_caffe_convention(reference_file: tuple[nn.Module, Path], tmp_path: Path) -> None:
    _, path = reference_file
    run = RunDir(tmp_path / "run")
    import_weights_stage(run, str(path))
    _, preprocess, labels, record = load_model(run.path("model.pt"))
    assert preprocess.channel_order == "BGR" and preprocess.input_range == 255.0
    assert preprocess.mean == (104.0, 117.0, 128.0) and preprocess.size == 224
    assert len(labels) == 1000 and record["statistics"] == "imported"
    assert (labels.ids[0], labels.names[0]) == ("n01440764", "tench, Tinca tinca")  # ImageNet's order and names
    assert (labels.ids[281], labels.names[281]) == ("n02123045", "tabby, tabby cat")
    assert run.is_fresh("import-weights", run.manifest()["stages"]["import-weights"]["params"], [], ["model.pt"])


def test_wrong_and_missing_keys_are_listed(reference_file: tuple[nn.Module, Path], tmp_path: Path) -> None:
    _, path = reference_file
    state = torch.load(path, weights_only=True)
    del state["inception_4a_1x1.weight"]
    state["surprise.weight"] = torch.zeros(1)
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    with pytest.raises(BninceptionError, match=r"inception_4a_1x1\.weight.*surprise\.weight"):
        import_pretrainedmodels(broken)


def test_not_a_state_dict_file_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a zip or pickle")
    with pytest.raises(BninceptionError, match=r"junk\.pth"):
        import_pretrainedmodels(junk)

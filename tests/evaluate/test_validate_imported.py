"""validate on a run made from imported (pretrainedmodels-layout) weights with an ImageFolder --data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from validate_helpers import make_image_folder, make_pretrained_file

from bninception.core.errors import BninceptionError
from bninception.core.rundir import RunDir

LABELS = ["cat", "coffee", "rocket"]


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunDir, Path]:
    from bninception.model.stages import import_weights_stage

    root = tmp_path_factory.mktemp("imported")
    weights = make_pretrained_file(root / "bn_inception.pth", num_classes=len(LABELS))
    run = RunDir(root / "run")
    labels_file = root / "labels.txt"
    labels_file.write_text("\n".join(LABELS) + "\n")
    import_weights_stage(run, str(weights), labels_file=str(labels_file))
    return run, make_image_folder(root / "photos", per_class=2)


def test_needs_data_when_no_training_record(imported: tuple[RunDir, Path]) -> None:
    from bninception.evaluate.validate import validate_run

    with pytest.raises(BninceptionError, match="--data"):
        validate_run(imported[0], save=False)


def test_imported_run_validates_on_image_folder(imported: tuple[RunDir, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from bninception.cli import main
    from bninception.export.stages import export_stage
    from bninception.model.checkpoint import load_model

    run, photos = imported
    _, pre, labels, record = load_model(run.path("model.pt"))
    assert record["statistics"] == "imported" and pre.channel_order == "BGR" and labels.ids == LABELS
    export_stage(run)
    assert main(["validate", "--run", str(run.root), "--data", str(photos), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["passed"] is True
    assert document["data"] == {"source": str(photos), "split": "all", "images": 6, "classes": 3,
                                "label_mapping": "identity"}
    kinds = [row["kind"] for row in document["rows"]]
    assert kinds == ["pytorch", "onnx"]  # no checkpoint.pt: no EMA row, and it says why
    assert any(s["kind"] == "pytorch-ema" and "imported" in s["reason"] for s in document["skipped"])
    onnx_row = document["rows"][1]
    assert onnx_row["status"] == "PASS" and onnx_row["comparison"]["max_abs_diff"] <= 1e-4
    assert onnx_row["comparison"]["top5"] is None  # 3 classes: no top-5
    # a digits run's 1-channel images do not fit this 3-channel model: a clear error, not a traceback
    assert main(["validate", "--run", str(run.root), "--data", "digits"]) == 2
    assert "1x224x224 (grayscale) images, the model takes 3x224x224" in capsys.readouterr().err

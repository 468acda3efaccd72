"""ImageNet labels for imported weights: WordNet ids and names in the model, folders matched by id or name
(never silently by position), user labels files, and the names served by /v1/classify and triton-repo."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import one_line_error
from validate_helpers import make_image_folder, make_pretrained_file

from bninception.cli import main
from bninception.core.errors import BninceptionError
from bninception.core.rundir import RunDir
from bninception.model.labels import ClassLabels, dataset_labels, imagenet_labels, match_classes, read_labels_file

# scikit-image's photographs in the folders an ImageNet user would give them: a tabby cat, an espresso,
# a rocket on its launch pad (the closest ImageNet class: space shuttle)
SYNSETS = {"cat": "n02123045", "coffee": "n07920052", "rocket": "n04266014"}
EXPECTED = {"n02123045": (281, "tabby, tabby cat"), "n07920052": (967, "espresso"),
            "n04266014": (812, "space shuttle")}


def test_imagenet_classes_are_the_standard_order() -> None:
    labels = imagenet_labels()
    assert len(labels) == 1000 and labels.ids == sorted(labels.ids) and len(set(labels.ids)) == 1000
    assert (labels.ids[0], labels.names[0]) == ("n01440764", "tench, Tinca tinca")
    for wnid, (index, name) in EXPECTED.items():
        assert (labels.ids[index], labels.names[index]) == (wnid, name)


def test_folders_are_matched_by_id_or_name_never_by_position() -> None:
    labels = imagenet_labels()
    by_id = match_classes(["n02123045", "n04266014", "n07920052"], labels)
    assert by_id.how == "by name" and by_id.indices.tolist() == [281, 812, 967]
    assert by_id.describe().startswith("by name: n02123045 -> 281 (n02123045 tabby, tabby cat), ")
    by_synonym = match_classes(["Tabby Cat", "space_shuttle", "espresso"], labels)
    assert by_synonym.indices.tolist() == [281, 812, 967]
    with pytest.raises(BninceptionError) as info:
        match_classes(["cat", "coffee", "n04266014"], labels)
    message = str(info.value)
    assert "2 of the dataset's 3 classes match no class of the model" in message and "\n" not in message
    assert "dataset ['cat', 'coffee']" in message and "n01440764 tench, Tinca tinca" in message
    assert "--match-by-position" in message
    asked = match_classes(["cat", "coffee", "rocket"], labels, by_position=True)
    assert asked.how == "by position (asked for)" and asked.indices.tolist() == [0, 1, 2]
    digits = ClassLabels.plain([str(i) for i in range(10)])
    assert match_classes([str(i) for i in range(10)], digits).how == "identity"


def test_labels_files_plain_and_tabbed(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("cat\n\ncoffee\nrocket\n")
    assert read_labels_file(plain, 3) == ClassLabels(["cat", "coffee", "rocket"], ["cat", "coffee", "rocket"])
    tabbed = tmp_path / "tabbed.txt"
    tabbed.write_text("n02123045\ttabby, tabby cat\nn07920052\tespresso\n")
    assert read_labels_file(tabbed) == ClassLabels(["n02123045", "n07920052"], ["tabby, tabby cat", "espresso"])
    with pytest.raises(BninceptionError, match=r"names 2 classes; the model has 1000"):
        read_labels_file(tabbed, 1000)
    mixed = tmp_path / "mixed.txt"
    mixed.write_text("n02123045\ttabby\ncoffee\n")
    with pytest.raises(BninceptionError, match=r"every line must be 'id<TAB>name' or none \(line 2"):
        read_labels_file(mixed)
    repeated = tmp_path / "repeated.txt"
    repeated.write_text("a\nb\na\n")
    with pytest.raises(BninceptionError, match=r"repeats class ids \['a'\]"):
        read_labels_file(repeated)
    assert dataset_labels(["cat", "coffee", "rocket"], str(plain)).names == ["cat", "coffee", "rocket"]
    folders = dataset_labels(["n02123045", "n07920052"], str(tabbed))
    assert folders.names == ["tabby, tabby cat", "espresso"]
    with pytest.raises(BninceptionError, match=r"no line for \['n09193705'\]"):
        dataset_labels(["n02123045", "n09193705"], str(tabbed))


@pytest.fixture(scope="module")
def imagenet_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunDir, Path]:
    """Imported 1000-class weights (random, pretrainedmodels layout), exported; and the photos in
    synset-named folders."""
    from bninception.export.stages import export_stage, fold_stage

    root = tmp_path_factory.mktemp("imagenet")
    weights = make_pretrained_file(root / "bn_inception.pth", num_classes=1000)
    run = RunDir(root / "run")
    assert main(["import-weights", "--run", str(run.root), str(weights)]) == 0
    export_stage(run)
    fold_stage(run)
    photos = make_image_folder(root / "named", per_class=2)
    synsets = root / "synsets"
    for name, wnid in SYNSETS.items():
        shutil.copytree(photos / name, synsets / wnid)
    return run, synsets


def test_validate_maps_synset_folders_by_name_and_says_so(imagenet_run: tuple[RunDir, Path],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from bninception.evaluate.data import load_eval_data

    run, synsets = imagenet_run
    data = load_eval_data(run, str(synsets))
    assert sorted(set(data.labels.tolist())) == [281, 812, 967] and data.classes == 1000
    assert main(["validate", "--run", str(run.root), "--data", str(synsets), "--no-engines"]) == 0
    out = capsys.readouterr().out
    assert "a model of 1000 classes; labels: by name: n02123045 -> 281 (n02123045 tabby, tabby cat)" in out
    saved = json.loads(run.path("validate.json").read_text())
    assert saved["data"]["label_mapping"].startswith("by name: n02123045 -> 281")


def test_folders_that_match_no_class_are_refused_in_one_line(imagenet_run: tuple[RunDir, Path], tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    run = imagenet_run[0]
    unknown = make_image_folder(tmp_path / "unknown", per_class=1)  # cat/, coffee/, rocket/
    assert main(["validate", "--run", str(run.root), "--data", str(unknown), "--no-engines"]) == 2
    one_line_error(capsys, "3 of the dataset's 3 classes match no class of the model",
                   "dataset ['cat', 'coffee', 'rocket']", "model [n01440764 tench, Tinca tinca")
    assert main(["validate", "--run", str(run.root), "--data", str(unknown), "--no-engines",
                 "--match-by-position"]) == 0
    assert "labels: by position (asked for): cat -> 0 (n01440764 tench, Tinca tinca)" in capsys.readouterr().out


def test_served_and_packaged_names_are_imagenet_names(imagenet_run: tuple[RunDir, Path], tmp_path: Path) -> None:
    import httpx
    from serve_helpers import start_in_thread

    from bninception.serve.app import create_app
    from bninception.triton_repo import write_repository

    run, synsets = imagenet_run
    app = create_app(run.path("model.folded.onnx"), max_batch=2)
    assert app.state.server.info.label_names[281] == "tabby, tabby cat"
    photo = next((synsets / "n02123045").iterdir()).read_bytes()
    with start_in_thread(app) as server:
        answer = httpx.post(f"{server.url}/v1/classify?top=3", content=photo,
                            headers={"Content-Type": "image/png"}, timeout=60).json()
        meta = httpx.get(f"{server.url}/v2/models/bninception", timeout=10).json()
    labels = imagenet_labels()
    for entry in answer["top"]:
        assert (entry["label"], entry["name"]) == (labels.ids[entry["index"]], labels.names[entry["index"]])
    assert meta["parameters"]["label_names"][967] == "espresso" and meta["parameters"]["labels"][967] == "n07920052"
    write_repository(run.root, tmp_path / "repo")
    lines = (tmp_path / "repo" / "bninception_onnx" / "labels.txt").read_text().splitlines()
    assert len(lines) == 1000 and lines[281] == "tabby, tabby cat" and lines[0] == "tench, Tinca tinca"


def test_import_weights_takes_a_labels_file_checked_against_the_classes(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from bninception.model.checkpoint import load_model

    weights = make_pretrained_file(tmp_path / "three.pth", num_classes=3)
    wrong = tmp_path / "four.txt"
    wrong.write_text("a\nb\nc\nd\n")
    assert main(["import-weights", "--run", str(tmp_path / "run"), str(weights), "--labels", str(wrong)]) == 2
    one_line_error(capsys, "names 4 classes; the model has 3")
    good = tmp_path / "three.txt"
    good.write_text("n02123045\ttabby, tabby cat\nn07920052\tespresso\nn04266014\tspace shuttle\n")
    assert main(["import-weights", "--run", str(tmp_path / "run"), str(weights), "--labels", str(good)]) == 0
    _, _, labels, _ = load_model(tmp_path / "run" / "model.pt")
    assert labels.ids == ["n02123045", "n07920052", "n04266014"] and labels.names[2] == "space shuttle"
    assert np.array_equal(match_classes(["n04266014"], labels).indices, [2])

"""export_onnx: BN kept, no Identity left, dynamic batch, names, metadata, opsets, parity vs PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from random_bn import save_random_model

from bninception.core import metadata
from bninception.core.errors import BninceptionError
from bninception.core.ort import create_session
from bninception.core.preprocess import Preprocess
from bninception.export.to_onnx import export_onnx, remove_identities, to_model_proto
from bninception.model.architecture import ModelConfig, build_model
from bninception.model.checkpoint import load_model
from bninception.model.labels import ClassLabels

DEMO = ModelConfig(num_classes=10, in_channels=1, width=0.25)
GRAY = Preprocess(size=32, resize=32, channel_order="GRAY", mean=(0.3,), std=(0.3,))


TEN = ClassLabels.plain(["a"] * 10)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    """The demo network with random BN state, exported once (opset 17) for the tests that read it."""
    root = tmp_path_factory.mktemp("export")
    save_random_model(str(root / "model.pt"), DEMO, GRAY, seed=3)
    model, _, _, _ = load_model(root / "model.pt")
    export_onnx(model, GRAY, ClassLabels.plain([str(i) for i in range(10)]), root / "m.onnx", source_sha256="ab" * 32)
    return model, root / "m.onnx"


def _bn_modules(model: torch.nn.Module) -> int:
    return sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_export_keeps_bn_and_removes_identities(demo: tuple[torch.nn.Module, Path]) -> None:
    model, out = demo
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("BatchNormalization") == _bn_modules(model) == 69
    assert "Identity" not in ops
    assert all(n.op_type != "Conv" or len(n.input) == 2 for n in proto.graph.node)  # no fused bias
    assert [i.name for i in proto.graph.input] == ["data"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    assert proto.opset_import[0].version == 17
    meta = {p.key: p.value for p in proto.metadata_props}
    assert set(meta) == set(metadata.KEYS) - {metadata.LABEL_NAMES}  # names equal to the ids: not repeated
    assert Preprocess.from_dict(json.loads(meta["bninception.preprocess"])) == GRAY
    assert json.loads(meta["bninception.labels"]) == [str(i) for i in range(10)]
    assert ModelConfig.from_dict(json.loads(meta["bninception.model_config"])) == DEMO
    assert meta["bninception.source_sha256"] == "ab" * 32
    assert model.training is False


def test_export_parity_and_dynamic_batch(demo: tuple[torch.nn.Module, Path]) -> None:
    model, out = demo
    sess = create_session(out, optimization="disable")
    for batch in (1, 5):
        x = np.random.default_rng(batch).standard_normal((batch, 1, 32, 32)).astype(np.float32)
        with torch.inference_mode():
            ref = model(torch.from_numpy(x)).numpy()
        got = sess.run(None, {"data": x})[0]
        assert got.shape == (batch, 10)
        assert np.abs(got - ref).max() <= 1e-4


def test_opset_range_ends(demo: tuple[torch.nn.Module, Path], tmp_path: Path) -> None:
    model, _ = demo
    for opset in (13, 21):
        out = tmp_path / f"m{opset}.onnx"
        export_onnx(model, GRAY, TEN, out, opset=opset)
        proto = onnx.load(str(out))
        assert proto.opset_import[0].version == opset
        assert sum(n.op_type == "BatchNormalization" for n in proto.graph.node) == 69


@pytest.mark.parametrize("opset", [12, 22])
def test_opset_out_of_range_writes_nothing(demo: tuple[torch.nn.Module, Path], tmp_path: Path,
                                           opset: int) -> None:
    model, _ = demo
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old")
    with pytest.raises(BninceptionError, match="opset"):
        export_onnx(model, GRAY, TEN, out, opset=opset)
    assert out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporary left behind


def test_channel_mismatch_is_clear(demo: tuple[torch.nn.Module, Path], tmp_path: Path) -> None:
    model, _ = demo
    with pytest.raises(BninceptionError, match="channel"):
        export_onnx(model, Preprocess(size=32, resize=32), TEN, tmp_path / "m.onnx")


def test_fresh_model_dedup_identities_removed(tmp_path: Path) -> None:
    """Untrained BN layers have equal parameters, which the exporter dedups through Identity nodes."""
    model = build_model(DEMO).eval()
    out = tmp_path / "fresh.onnx"
    raw = to_model_proto(model, (1, 32, 32))
    assert len(raw.graph.initializer) < 4 * 69  # the exporter did share BN parameters
    export_onnx(model, GRAY, TEN, out)
    proto = onnx.load(str(out))
    ops = [n.op_type for n in proto.graph.node]
    assert "Identity" not in ops and ops.count("BatchNormalization") == 69
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.abs(create_session(out, optimization="disable").run(None, {"data": x})[0] - ref).max() <= 1e-4


def test_remove_identities_keeps_graph_output_identity() -> None:
    h = onnx.helper
    nodes = [h.make_node("Identity", ["x"], ["a"]), h.make_node("Relu", ["a"], ["b"]),
             h.make_node("Identity", ["b"], ["y"])]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", 1, [2])],
                         [h.make_tensor_value_info("y", 1, [2])])
    m = h.make_model(graph)
    assert remove_identities(m) == 1
    assert [n.op_type for n in m.graph.node] == ["Relu", "Identity"]
    assert m.graph.node[0].input[0] == "x"
    onnx.checker.check_model(m, full_check=True)

"""Helpers shared by the validate / bench / report tests (no tests here).

Artifacts are added through the real stage functions when they import (export, fold,
calibrate); where a stage is not there yet, an equivalent file is made here so the validate
logic is still exercised, and only ever inside a private copy of the demo run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from bninception.core.rundir import RunDir


def copy_run(run: RunDir, target: Path) -> RunDir:
    shutil.copytree(run.root, target)
    return RunDir(target)


def _export_here(run: RunDir) -> None:
    import torch

    from bninception.model.checkpoint import load_model

    model, pre, _, _ = load_model(run.path("model.pt"))
    x = torch.zeros(1, pre.channels, pre.size, pre.size)
    torch.onnx.export(model, (x,), str(run.path("model.onnx")), dynamo=False, input_names=["data"],
                      output_names=["logits"], dynamic_axes={"data": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17)


def add_onnx_artifacts(run: RunDir) -> None:
    """model.onnx and model.folded.onnx through the export stages (a plain export when they are absent)."""
    try:
        from bninception.export.stages import export_stage, fold_stage
    except ImportError:
        if not run.path("model.onnx").is_file():
            _export_here(run)
        return
    export_stage(run)
    fold_stage(run)


def _calibration_images(run: RunDir, count: int = 32) -> np.ndarray:
    from bninception.model.data import load_run_bundle, stack_split

    bundle = load_run_bundle(run)
    assert bundle is not None
    return stack_split(bundle.train, count)[0]


def full_copy(demo_run: RunDir, target: Path) -> RunDir:
    """A private copy of the demo run with every ONNX artifact (FP32, folded, FP16, INT8).

    The stages run on the shared run (they skip when another test already ran them); a stand-in
    made with ONNX Runtime's own tools is written only into the copy.
    """
    add_onnx_artifacts(demo_run)
    try:
        from bninception.calibrate.stages import fp16_stage, int8_stage
    except ImportError:
        run = copy_run(demo_run, target)
        add_precision_artifacts_with_ort(run)
        return run
    fp16_stage(demo_run)
    int8_stage(demo_run)
    return copy_run(demo_run, target)


def add_precision_artifacts_with_ort(run: RunDir) -> None:
    """model.fp16.onnx and model.int8.onnx made by ONNX Runtime's converters (writes files: copies only)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.transformers.float16 import convert_float_to_float16

    folded = run.path("model.folded.onnx")
    source = folded if folded.is_file() else run.path("model.onnx")
    fp16 = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(fp16, str(run.path("model.fp16.onnx")))
    images = _calibration_images(run)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"data": images[i:i + 8]} for i in range(0, len(images), 8)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    quantize_static(str(source), str(run.path("model.int8.onnx")), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)


def perturb_final_bias(path: Path, delta: float, index: int = 0) -> None:
    """Add ``delta`` to one entry of the bias of the graph's last Gemm (a deliberately broken artifact)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    gemm = [n for n in model.graph.node if n.op_type == "Gemm"][-1]
    bias_name = gemm.input[2]
    for k, init in enumerate(model.graph.initializer):
        if init.name == bias_name:
            bias = numpy_helper.to_array(init).copy()
            bias[index] += np.asarray(delta, dtype=bias.dtype)
            model.graph.initializer[k].CopyFrom(numpy_helper.from_array(bias, bias_name))
            break
    else:
        raise AssertionError(f"no initializer {bias_name} in {path}")
    onnx.save(model, str(path))


def make_pretrained_file(path: Path, num_classes: int = 3, seed: int = 0) -> Path:
    """A random-weights BN-Inception state dict in the pretrainedmodels layout (conv biases kept).

    The first BN gets the statistics of its conv's output on Caffe-range inputs (one cheap conv),
    so activations stay near unit scale downstream, as with real pretrained weights.
    """
    import torch

    from bninception.model.architecture import ModelConfig, build_model
    from bninception.model.pretrained import BN_BUFFERS, layer_names

    torch.manual_seed(seed)
    model = build_model(ModelConfig(num_classes=num_classes, in_channels=3)).eval()
    first = model.conv1_7x7_s2
    with torch.no_grad():
        out = first.conv(torch.randn(2, 3, 64, 64) * 60.0)
        first.bn.running_mean.copy_(out.mean((0, 2, 3)))
        first.bn.running_var.copy_(out.var((0, 2, 3)))
    own = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for ours, theirs in layer_names(model).items():
        bias = torch.randn(own[f"{ours}.conv.weight"].shape[0]) * 0.1
        out[f"{theirs}.weight"] = own[f"{ours}.conv.weight"].clone()
        out[f"{theirs}.bias"] = bias
        for buffer in BN_BUFFERS:
            out[f"{theirs}_bn.{buffer}"] = own[f"{ours}.bn.{buffer}"].clone()
        out[f"{theirs}_bn.running_mean"] = own[f"{ours}.bn.running_mean"] + bias  # imported as mu - b
    out["last_linear.weight"] = own["last_linear.weight"].clone()
    out["last_linear.bias"] = own["last_linear.bias"].clone()
    torch.save(out, path)
    return path


def make_image_folder(root: Path, per_class: int = 3) -> Path:
    """A tiny ImageFolder (``root/CLASS/*.png``) from scikit-image's sample photos."""
    from PIL import Image
    from skimage import data

    photos = {"cat": data.chelsea(), "coffee": data.coffee(), "rocket": data.rocket()}
    for name, pixels in photos.items():
        folder = root / name
        folder.mkdir(parents=True)
        image = Image.fromarray(pixels)
        width, height = image.size
        for i in range(per_class):
            crop = image.crop((i * width // 10, i * height // 12, width - i * width // 14, height))
            if i % 2:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            crop.save(folder / f"{name}_{i}.png")
    return root

"""Helpers for the validate / bench / report tests: broken artifacts, imported weights, image folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np


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

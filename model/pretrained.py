"""Import the Caffe-converted BN-Inception weights (pretrainedmodels / TSN layout).

A conv bias b before BN is absorbed as BN running mean (mu - b).
"""

from __future__ import annotations

import os

import torch

from bninception.core.errors import BninceptionError
from bninception.core.preprocess import Preprocess
from bninception.model.architecture import TABLE5, BNInception, ModelConfig, build_model
from bninception.model.checkpoint import load

# BGR, 0..255, mean (104, 117, 128) subtracted: the Caffe convention of these weights.
CAFFE_PREPROCESS = Preprocess(size=224, resize=256, channel_order="BGR", input_range=255.0,
                              mean=(104.0, 117.0, 128.0), std=(1.0, 1.0, 1.0))
BN_BUFFERS = ("weight", "bias", "running_mean", "running_var")


def layer_names(model: BNInception) -> dict[str, str]:
    """Our ConvBN module path -> reference prefix (``inception.3a.branches.1x1`` -> ``inception_3a_1x1``)."""
    names = {stem: stem for stem in ("conv1_7x7_s2", "conv2_3x3_reduce", "conv2_3x3")}
    for row in TABLE5:
        for branch in model.inception[row.name].branches:
            names[f"inception.{row.name}.branches.{branch}"] = f"inception_{row.name}_{branch}"
    return names


def convert_state_dict(reference: dict[str, torch.Tensor], model: BNInception) -> dict[str, torch.Tensor]:
    """Map a pretrainedmodels state dict onto ``model``'s names, absorbing conv biases into BN."""
    converted: dict[str, torch.Tensor] = {}
    expected: set[str] = set()
    for ours, theirs in layer_names(model).items():
        expected.update({f"{theirs}.weight", f"{theirs}.bias"} | {f"{theirs}_bn.{b}" for b in BN_BUFFERS})
        missing = [k for k in (f"{theirs}.weight", *(f"{theirs}_bn.{b}" for b in BN_BUFFERS))
                   if k not in reference]
        if missing:
            continue  # reported below with every other missing key
        converted[f"{ours}.conv.weight"] = reference[f"{theirs}.weight"]
        for buffer in BN_BUFFERS:
            converted[f"{ours}.bn.{buffer}"] = reference[f"{theirs}_bn.{buffer}"]
        bias = reference.get(f"{theirs}.bias")
        if bias is not None:
            converted[f"{ours}.bn.running_mean"] = reference[f"{theirs}_bn.running_mean"] - bias
    for name in ("last_linear.weight", "last_linear.bias"):
        expected.add(name)
        if name in reference:
            converted[name] = reference[name]
    ignorable = {k for k in reference if k.endswith("num_batches_tracked")}
    required = {k for k in expected if not k.endswith(".bias") or k.startswith("last_linear")
                or k.endswith("_bn.bias")}
    missing = sorted(required - set(reference))
    unexpected = sorted(set(reference) - expected - ignorable)
    if missing or unexpected:
        raise BninceptionError(f"not a pretrainedmodels BN-Inception state dict: "
                               f"missing keys {missing[:20]}{' ...' if len(missing) > 20 else ''}, "
                               f"unexpected keys {unexpected[:20]}{' ...' if len(unexpected) > 20 else ''}")
    own = model.state_dict()
    for key, value in converted.items():
        if own[key].shape != value.shape:
            raise BninceptionError(f"{key}: shape {tuple(value.shape)} does not fit the model's "
                                   f"{tuple(own[key].shape)}")
    return converted


def import_pretrainedmodels(path: str | os.PathLike[str]) -> BNInception:
    """Read a pretrainedmodels ``bninception`` state dict file (weights_only) into our model, eval mode."""
    reference = load(path)
    if isinstance(reference, dict) and isinstance(reference.get("state_dict"), dict):
        reference = reference["state_dict"]
    if not isinstance(reference, dict) or not all(isinstance(v, torch.Tensor) for v in reference.values()):
        raise BninceptionError(f"{path}: expected a state dict of tensors")
    weight = reference.get("last_linear.weight")
    if weight is None or weight.ndim != 2:
        raise BninceptionError(f"{path}: missing keys ['last_linear.weight']")
    first = reference.get("conv1_7x7_s2.weight")
    if first is None:
        raise BninceptionError(f"{path}: missing keys ['conv1_7x7_s2.weight']")
    model = build_model(ModelConfig(num_classes=weight.shape[0], in_channels=first.shape[1]))
    converted = convert_state_dict(reference, model)
    model.load_state_dict(converted, strict=False)
    return model.eval()

"""Helpers for the serve/ and Triton tests: a small ONNX classifier with the export metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np

LABELS = [f"digit-{i}" for i in range(10)]


def export_classifier(path: Path, metadata: bool = True) -> Path:
    """The demo BN-Inception (10 classes, 1 channel, width 0.25, 32x32) as ONNX with a dynamic batch.

    BN statistics are set from one batch of noise, so the logits depend on the input.
    """
    import onnx
    import torch

    from bninception.model.architecture import ModelConfig, build_model
    from bninception.model.data import digits_preprocess

    torch.manual_seed(0)
    config = ModelConfig(num_classes=10, in_channels=1, width=0.25)
    model = build_model(config)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average: one batch sets the statistics
            module.reset_running_stats()
    with torch.no_grad():
        model.train()(torch.randn(64, 1, 32, 32))
    model.eval()
    raw = path.with_suffix(".raw.onnx")
    torch.onnx.export(model, (torch.zeros(2, 1, 32, 32),), str(raw), dynamo=False, input_names=["data"],
                      output_names=["logits"],
                      dynamic_axes={"data": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17)
    proto = onnx.load(str(raw))
    raw.unlink()
    if metadata:
        from bninception.core import metadata as meta

        meta.write(proto, meta.entries(digits_preprocess(32), LABELS, config.to_dict(), "0" * 64))
    onnx.save(proto, str(path))
    return path


def digits_images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 1, 32, 32)).astype(np.float32)

"""BN-Inception follows Table 5 and the reference implementation's parameter shapes."""

from __future__ import annotations

import pytest
import torch
from reference_bninception import reference_module
from torch import nn

from bninception.core.errors import BninceptionError
from bninception.model.architecture import TABLE5, ModelConfig, build_model, count_parameters
from bninception.model.config import MIN_INPUT_SIZE
from bninception.model.pretrained import layer_names

TABLE5_OUTPUT_CHANNELS = {"3a": 256, "3b": 320, "3c": 576, "4a": 576, "4b": 576, "4c": 608, "4d": 608,
                          "4e": 1056, "5a": 1024, "5b": 1024}
TABLE5_OUTPUT_SIZE = {"3a": 28, "3b": 28, "3c": 14, "4a": 14, "4b": 14, "4c": 14, "4d": 14, "4e": 7,
                      "5a": 7, "5b": 7}


def test_parameter_shapes_equal_reference_minus_conv_biases() -> None:
    reference = reference_module().BNInception(num_classes=1000)
    ours = build_model(ModelConfig(num_classes=1000))
    ref_shapes = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    expected: dict[str, tuple[int, ...]] = {}
    for our_prefix, ref_prefix in layer_names(ours).items():
        expected[f"{our_prefix}.conv.weight"] = ref_shapes.pop(f"{ref_prefix}.weight")
        ref_shapes.pop(f"{ref_prefix}.bias")  # the conv bias we drop (BN's beta takes its role)
        for buffer in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            expected[f"{our_prefix}.bn.{buffer}"] = ref_shapes.pop(f"{ref_prefix}_bn.{buffer}")
    expected["last_linear.weight"] = ref_shapes.pop("last_linear.weight")
    expected["last_linear.bias"] = ref_shapes.pop("last_linear.bias")
    assert ref_shapes == {}, f"reference layers not matched: {sorted(ref_shapes)}"
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == expected
    conv_biases = sum(m.bias.numel() for m in reference.modules() if isinstance(m, nn.Conv2d))
    assert count_parameters(ours) == count_parameters(reference) - conv_biases


def test_module_outputs_follow_table5_at_224() -> None:
    model = build_model(ModelConfig(num_classes=1000)).eval()
    sizes = {}
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        x = model.pool2_3x3_s2(model.conv2_3x3(model.conv2_3x3_reduce(model.pool1_3x3_s2(model.conv1_7x7_s2(x)))))
        assert tuple(x.shape[1:]) == (192, 28, 28)
        for name, module in model.inception.items():
            x = module(x)
            sizes[name] = tuple(x.shape[1:])
        assert model(torch.randn(2, 3, 224, 224)).shape == (2, 1000)
    assert sizes == {k: (TABLE5_OUTPUT_CHANNELS[k], TABLE5_OUTPUT_SIZE[k], TABLE5_OUTPUT_SIZE[k]) for k in sizes}


def test_every_conv_is_followed_by_bn_and_has_no_bias() -> None:
    model = build_model(ModelConfig(num_classes=10, width=0.25))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == len(bns) == 3 + sum(5 + bool(r.c1x1) + bool(r.proj) for r in TABLE5)
    assert all(c.bias is None for c in convs)
    pools = {name: type(m.pool).__name__ for name, m in model.inception.items()}
    assert pools == {r.name: "MaxPool2d" if r.pool == "max" else "AvgPool2d" for r in TABLE5}


def test_small_input_reaches_1x1_at_5b_and_options() -> None:
    model = build_model(ModelConfig(num_classes=10, in_channels=1, width=0.25)).eval()
    with torch.no_grad():
        assert model.features(torch.randn(2, 1, 32, 32)).shape[2:] == (1, 1)
    no_bn = build_model(ModelConfig(num_classes=10, width=0.25, batchnorm=False))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in no_bn.modules())
    assert all(m.bias is not None for m in no_bn.modules() if isinstance(m, nn.Conv2d))
    sigmoid = build_model(ModelConfig(num_classes=10, width=0.25, activation="sigmoid", dropout=0.2))
    assert any(isinstance(m, nn.Sigmoid) for m in sigmoid.modules())
    assert not any(isinstance(m, nn.ReLU) for m in sigmoid.modules())
    assert isinstance(sigmoid.dropout, nn.Dropout)


@pytest.mark.parametrize("bad", [{"activation": "tanh"}, {"width": 0}, {"dropout": 1.0}, {"num_classes": 0}])
def test_bad_config_is_a_clear_error(bad: dict) -> None:
    with pytest.raises(BninceptionError):
        ModelConfig(**bad)
    with pytest.raises(BninceptionError, match="unknown model config keys"):
        ModelConfig.from_dict({"colour": 1})


def test_min_input_size_is_exact_and_checked() -> None:
    from bninception.model.train import TrainConfig

    model = build_model(ModelConfig(num_classes=10, in_channels=1, width=0.125)).eval()
    with torch.no_grad():
        model(torch.randn(1, 1, MIN_INPUT_SIZE, MIN_INPUT_SIZE))
        with pytest.raises(RuntimeError):
            model(torch.randn(1, 1, MIN_INPUT_SIZE - 1, MIN_INPUT_SIZE - 1))
    with pytest.raises(BninceptionError, match="too small for BN-Inception"):
        TrainConfig(image_size=MIN_INPUT_SIZE - 1)

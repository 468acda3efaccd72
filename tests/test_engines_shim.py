"""The TensorRT 10.x / 11.x shim, exercised with fake ``tensorrt`` modules that mimic each generation.

Attribute sets follow the Python API references: 10.x has NetworkDefinitionCreationFlag
EXPLICIT_BATCH=0 (deprecated) and STRONGLY_TYPED=1 and the weak-typing BuilderFlags; 11.x has
STRONGLY_TYPED (deprecated, ignored) and no EXPLICIT_BATCH, no FP16/INT8/... builder flags.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bninception.core.errors import BninceptionError
from bninception.engines import shim

WEAK_10X = {"FP16": 0, "INT8": 1, "BF16": 17, "FP8": 15, "INT4": 22, "FP4": 26,
            "OBEY_PRECISION_CONSTRAINTS": 9, "PREFER_PRECISION_CONSTRAINTS": 10}
COMMON_FLAGS = {"DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4, "DISABLE_TIMING_CACHE": 5, "TF32": 6,
                "SPARSE_WEIGHTS": 7, "VERSION_COMPATIBLE": 13, "EDITABLE_TIMING_CACHE": 27}
HW = SimpleNamespace(NONE="hw-none", AMPERE_PLUS="hw-ampere+", SAME_COMPUTE_CAPABILITY="hw-same-cc")


def fake_trt_10() -> SimpleNamespace:
    return SimpleNamespace(
        __version__="10.8.0.43", Builder=object,
        NetworkDefinitionCreationFlag=SimpleNamespace(EXPLICIT_BATCH=0, STRONGLY_TYPED=1,
                                                      PREFER_JIT_PYTHON_PLUGINS=2,
                                                      PREFER_AOT_PYTHON_PLUGINS=3),
        BuilderFlag=SimpleNamespace(**WEAK_10X, **COMMON_FLAGS),
        HardwareCompatibilityLevel=HW,
    )


def fake_trt_11() -> SimpleNamespace:
    return SimpleNamespace(
        __version__="11.0.0.12", Builder=object,
        NetworkDefinitionCreationFlag=SimpleNamespace(STRONGLY_TYPED=0, PREFER_JIT_PYTHON_PLUGINS=1,
                                                      PREFER_AOT_PYTHON_PLUGINS=2),
        BuilderFlag=SimpleNamespace(**COMMON_FLAGS),
        HardwareCompatibilityLevel=HW,
    )


class FakeConfig:
    """Records flag calls like IBuilderConfig (flags start as TensorRT's defaults: TF32 on)."""

    def __init__(self, initially_set: tuple[int, ...] = (6,)) -> None:
        self.flags = set(initially_set)
        self.calls: list[tuple[str, object]] = []
        self.hardware_compatibility_level: object = HW.NONE

    def set_flag(self, flag: int) -> None:
        self.calls.append(("set", flag))
        self.flags.add(flag)

    def clear_flag(self, flag: int) -> None:
        self.calls.append(("clear", flag))
        self.flags.discard(flag)

    def get_flag(self, flag: int) -> bool:
        return flag in self.flags


class FakeBuilder:
    def __init__(self) -> None:
        self.network_flags: list[int] = []

    def create_network(self, flags: int = 0) -> str:
        self.network_flags.append(flags)
        return "network"


def test_major_version_accepts_10_and_11_only() -> None:
    assert shim.major_version(fake_trt_10()) == 10
    assert shim.major_version(fake_trt_11()) == 11
    for bad in ("8.6.1", "9.3.0", "12.0.0"):
        with pytest.raises(BninceptionError, match=f"TensorRT {bad} is not supported"):
            shim.major_version(SimpleNamespace(__version__=bad))
    with pytest.raises(BninceptionError, match="cannot read the TensorRT version"):
        shim.major_version(SimpleNamespace())


def test_10x_asks_for_strong_typing_with_the_creation_flag() -> None:
    trt, builder = fake_trt_10(), FakeBuilder()
    assert shim.network_flags(trt) == 1 << 1  # 1 << int(STRONGLY_TYPED), STRONGLY_TYPED == 1
    assert shim.create_network(trt, builder) == "network"
    assert builder.network_flags == [2]


def test_11x_passes_no_flags_strong_typing_is_the_default() -> None:
    trt, builder = fake_trt_11(), FakeBuilder()
    assert not hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH")
    shim.create_network(trt, builder)
    assert builder.network_flags == [0]


def test_10x_without_strongly_typed_flag_is_refused() -> None:
    trt = fake_trt_10()
    trt.NetworkDefinitionCreationFlag = SimpleNamespace(EXPLICIT_BATCH=0)
    with pytest.raises(BninceptionError, match="no STRONGLY_TYPED"):
        shim.network_flags(trt)


@pytest.mark.parametrize("make", [fake_trt_10, fake_trt_11])
def test_fp32_clears_tf32_and_never_sets_a_precision_flag(make) -> None:
    trt, config = make(), FakeConfig()
    policy = shim.configure_precision(trt, config, "fp32")
    assert config.calls == [("clear", COMMON_FLAGS["TF32"])]
    assert COMMON_FLAGS["TF32"] not in config.flags
    assert policy["tf32"] == "off" and policy["strongly_typed"] is True
    assert policy["trt_major"] == shim.major_version(trt)


@pytest.mark.parametrize("make", [fake_trt_10, fake_trt_11])
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_reduced_precision_touches_no_flag(make, precision: str) -> None:
    trt, config = make(), FakeConfig()
    policy = shim.configure_precision(trt, config, precision)
    assert config.calls == []  # precision comes from the ONNX model, not from builder flags
    assert policy["tf32"] == "default"


def test_weak_typing_flags_known_per_generation() -> None:
    assert shim.check_strongly_typed(fake_trt_10(), FakeConfig()) == list(shim.WEAK_TYPING_FLAGS)
    assert shim.check_strongly_typed(fake_trt_11(), FakeConfig()) == []


def test_a_set_weak_typing_flag_is_an_error_on_10x() -> None:
    config = FakeConfig(initially_set=(COMMON_FLAGS["TF32"], WEAK_10X["FP16"], WEAK_10X["INT8"]))
    with pytest.raises(BninceptionError, match="FP16, INT8"):
        shim.configure_precision(fake_trt_10(), config, "fp16")


def test_tf32_absent_is_reported_not_crashed() -> None:
    trt = fake_trt_11()
    trt.BuilderFlag = SimpleNamespace(DEBUG=2)
    assert shim.disable_tf32(trt, FakeConfig()) is False
    assert shim.configure_precision(trt, FakeConfig(), "fp32")["tf32"] == "default"


@pytest.mark.parametrize("make", [fake_trt_10, fake_trt_11])
def test_hardware_compatibility(make) -> None:
    trt = make()
    config = FakeConfig()
    shim.set_hardware_compatibility(trt, config, "none")
    assert config.hardware_compatibility_level == HW.NONE
    shim.set_hardware_compatibility(trt, config, "ampere_plus")
    assert config.hardware_compatibility_level == HW.AMPERE_PLUS
    shim.set_hardware_compatibility(trt, config, "same_cc")
    assert config.hardware_compatibility_level == HW.SAME_COMPUTE_CAPABILITY
    with pytest.raises(BninceptionError, match="hardware compatibility must be one of"):
        shim.set_hardware_compatibility(trt, config, "turing")

"""Every TensorRT 10.x / 11.x difference this project meets, in one place.

Both generations build *strongly typed* networks here: the precision of every tensor comes from
the ONNX model (FP32 folded, FP16 with FP32 I/O, INT8 with explicit Q/DQ), never from builder
flags. What differs is how one asks for that:

* TensorRT 10.x: strong typing is opt-in with the creation flag
  ``1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED)``; ``EXPLICIT_BATCH`` is deprecated
  and ignored (networks are always explicit batch since 10.0).
  https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/Builder.html
* TensorRT 11.x: networks are strongly typed by default, ``STRONGLY_TYPED`` is "retained for API
  compatibility but is ignored" and ``EXPLICIT_BATCH`` no longer exists, so we pass no flags.
  https://docs.nvidia.com/deeplearning/tensorrt/11.0.0/_static/python-api/infer/Core/Builder.html
  https://docs.nvidia.com/deeplearning/tensorrt/11.0.0/getting-started/release-notes-11/11.0.0.html
* TensorRT 11.x removed the weak-typing builder flags (``BuilderFlag.FP16``, ``INT8``, ``BF16``,
  ``FP8``, ``INT4``, ``FP4``, ``OBEY/PREFER_PRECISION_CONSTRAINTS``), ``int8_calibrator`` and
  the quantization flags, and ``Builder.platform_has_fast_fp16/int8``. We never use any of them
  on either generation; :func:`check_strongly_typed` verifies that none is set on 10.x, where
  they still exist.
  https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-python-api-reference.html
  https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-python-api-patterns.html
* ``BuilderFlag.TF32`` exists in both (enabled by default; it is a math mode for FP32 tensors,
  not a weak-typing flag), so the FP32 engine clears it on both for parity with PyTorch.

The functions take the ``tensorrt`` module as an argument so tests can pass small fake modules
that mimic each generation's attribute set.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from bninception.core.errors import BninceptionError

if TYPE_CHECKING:
    import tensorrt

SUPPORTED_MAJORS = (10, 11)

# Removed in 11.x (migration guide above); on 10.x they exist but must stay unset here.
WEAK_TYPING_FLAGS = ("FP16", "INT8", "BF16", "FP8", "INT4", "FP4",
                     "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS")

HARDWARE_COMPATIBILITY = {"none": "NONE", "ampere_plus": "AMPERE_PLUS",
                          "same_cc": "SAME_COMPUTE_CAPABILITY"}


def major_version(trt: ModuleType | Any) -> int:
    """The TensorRT major version, refusing anything but 10.x and 11.x."""
    version = str(getattr(trt, "__version__", ""))
    try:
        major = int(version.split(".")[0])
    except ValueError:
        raise BninceptionError(f"cannot read the TensorRT version from {version!r}") from None
    if major not in SUPPORTED_MAJORS:
        raise BninceptionError(f"TensorRT {version} is not supported: this project needs 10.x or 11.x")
    return major


def network_flags(trt: ModuleType | Any) -> int:
    """The ``create_network`` flags that give a strongly typed, explicit-batch network."""
    if major_version(trt) >= 11:
        return 0  # strongly typed by default; STRONGLY_TYPED is ignored and EXPLICIT_BATCH gone
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if flag is None:
        raise BninceptionError(f"TensorRT {trt.__version__} has no STRONGLY_TYPED network flag; "
                               "use TensorRT 10.x or later")
    return 1 << int(flag)


def create_network(trt: ModuleType | Any, builder: tensorrt.Builder) -> tensorrt.INetworkDefinition:
    return builder.create_network(network_flags(trt))


def disable_tf32(trt: ModuleType | Any, config: tensorrt.IBuilderConfig) -> bool:
    """Clear ``BuilderFlag.TF32`` (FP32 parity); False if this TensorRT has no such flag."""
    flag = getattr(trt.BuilderFlag, "TF32", None)
    if flag is None:
        return False
    config.clear_flag(flag)
    return True


def check_strongly_typed(trt: ModuleType | Any, config: tensorrt.IBuilderConfig) -> list[str]:
    """The names of weak-typing flags this TensorRT still has (10.x); error if any is set."""
    present = [name for name in WEAK_TYPING_FLAGS if hasattr(trt.BuilderFlag, name)]
    set_flags = [name for name in present if config.get_flag(getattr(trt.BuilderFlag, name))]
    if set_flags:
        raise BninceptionError(f"weak-typing builder flags are set ({', '.join(set_flags)}): engines here "
                               "are strongly typed and take their precision from the ONNX model")
    return present


def set_hardware_compatibility(trt: ModuleType | Any, config: tensorrt.IBuilderConfig, level: str) -> None:
    """Set ``config.hardware_compatibility_level`` from ``none`` / ``ampere_plus`` / ``same_cc``."""
    if level not in HARDWARE_COMPATIBILITY:
        raise BninceptionError(f"hardware compatibility must be one of {sorted(HARDWARE_COMPATIBILITY)}, "
                               f"got {level!r}")
    if level == "none":
        return
    enum = getattr(trt, "HardwareCompatibilityLevel", None)
    member = getattr(enum, HARDWARE_COMPATIBILITY[level], None)
    if member is None:
        raise BninceptionError(f"TensorRT {trt.__version__} has no hardware compatibility level "
                               f"{HARDWARE_COMPATIBILITY[level]}")
    config.hardware_compatibility_level = member


def configure_precision(trt: ModuleType | Any, config: tensorrt.IBuilderConfig,
                        precision: str) -> dict[str, Any]:
    """Apply the precision policy: no weak-typing flags ever; TF32 off for the FP32 engine.

    Returns what was done, for the sidecar.
    """
    check_strongly_typed(trt, config)
    tf32_off = precision == "fp32" and disable_tf32(trt, config)
    return {"strongly_typed": True, "tf32": "off" if tf32_off else "default",
            "network_flags": network_flags(trt), "trt_major": major_version(trt)}

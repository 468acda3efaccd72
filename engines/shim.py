"""Every TensorRT 10.x / 11.x difference this project meets, in one place (docs/decisions.md, "TensorRT 10 and 11").

Both build strongly typed networks: precision comes from the ONNX model, never from builder flags.
Functions take the ``tensorrt`` module as an argument so tests can pass fakes of each generation.
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
HARDWARE_COMPATIBILITY_SINCE = {"same_cc": "10.9"}  # first release whose bindings have the level


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


def hardware_compatibility_levels(trt: ModuleType | Any) -> list[str]:
    """The ``--hardware-compat`` values this TensorRT offers (``none`` always)."""
    enum = getattr(trt, "HardwareCompatibilityLevel", None)
    return [level for level, member in HARDWARE_COMPATIBILITY.items()
            if level == "none" or hasattr(enum, member)]


def check_hardware_compatibility(trt: ModuleType | Any, level: str) -> None:
    """Refuse a level this TensorRT lacks, naming the release that has it and what is offered."""
    if level not in HARDWARE_COMPATIBILITY:
        raise BninceptionError(f"hardware compatibility must be one of {sorted(HARDWARE_COMPATIBILITY)}, "
                               f"got {level!r}")
    offered = hardware_compatibility_levels(trt)
    if level not in offered:
        since = HARDWARE_COMPATIBILITY_SINCE.get(level)
        needs = f"; {level} needs TensorRT {since} or later" if since else ""
        raise BninceptionError(f"TensorRT {getattr(trt, '__version__', '?')} has no hardware compatibility "
                               f"level {HARDWARE_COMPATIBILITY[level]}{needs} (this TensorRT offers: "
                               f"{', '.join(offered)})")


def set_hardware_compatibility(trt: ModuleType | Any, config: tensorrt.IBuilderConfig, level: str) -> None:
    """Set ``config.hardware_compatibility_level`` from ``none`` / ``ampere_plus`` / ``same_cc``."""
    check_hardware_compatibility(trt, level)
    if level == "none":
        return
    config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, HARDWARE_COMPATIBILITY[level])


def configure_precision(trt: ModuleType | Any, config: tensorrt.IBuilderConfig,
                        precision: str) -> dict[str, Any]:
    """Apply the precision policy (no weak-typing flags; TF32 off for FP32); return what was done, for the sidecar."""
    check_strongly_typed(trt, config)
    tf32_off = precision == "fp32" and disable_tf32(trt, config)
    return {"strongly_typed": True, "tf32": "off" if tf32_off else "default",
            "network_flags": network_flags(trt), "trt_major": major_version(trt)}

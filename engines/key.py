"""The engine key and its JSON sidecar, and the rule that refuses an engine built elsewhere.

The key hashes exactly what the plan depends on: precision, profile, source ONNX, TensorRT version,
build options, and the GPU fields its hardware-compatibility level needs (``none``: name and compute
capability; ``same_cc``: capability; ``ampere_plus``: neither).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from bninception.core.errors import BninceptionError
from bninception.core.layout import PRECISION_FILES
from bninception.engines.detect import HostEnv
from bninception.engines.profile import BatchProfile
from bninception.engines.shim import HARDWARE_COMPATIBILITY

SIDECAR_FORMAT = "bninception-engine/1"
MAX_OPT_LEVEL = 5
_KEY_RE = re.compile(r"^(fp32|fp16|int8)-\d+x\d+x\d+-[0-9a-f]{16}$")


@dataclass(frozen=True)
class BuildOptions:
    """Builder settings that change the plan (and so the key)."""

    workspace_gib: float = 2.0
    opt_level: int = 3
    hardware_compatibility: str = "none"

    def __post_init__(self) -> None:
        if not 0 < self.workspace_gib <= 1024:
            raise BninceptionError(f"workspace must be in (0, 1024] GiB, got {self.workspace_gib}")
        if not 0 <= self.opt_level <= MAX_OPT_LEVEL:
            raise BninceptionError(f"builder optimization level must be 0..{MAX_OPT_LEVEL}, "
                                   f"got {self.opt_level}")
        if self.hardware_compatibility not in HARDWARE_COMPATIBILITY:
            raise BninceptionError(f"hardware compatibility must be one of {sorted(HARDWARE_COMPATIBILITY)}, "
                                   f"got {self.hardware_compatibility!r}")

    @property
    def workspace_bytes(self) -> int:
        return int(self.workspace_gib * (1 << 30))


@dataclass(frozen=True)
class EngineSpec:
    """Everything an engine is built from and for."""

    precision: str
    profile: BatchProfile
    onnx_sha256: str
    env: HostEnv
    options: BuildOptions = field(default_factory=BuildOptions)

    def __post_init__(self) -> None:
        if self.precision not in PRECISION_FILES:
            raise BninceptionError(f"precision must be one of {sorted(PRECISION_FILES)}, "
                                   f"got {self.precision!r}")

    @property
    def source_onnx(self) -> str:
        return PRECISION_FILES[self.precision]

    def key_fields(self) -> dict[str, Any]:
        """What the plan depends on: GPU fields only as far as its hardware compatibility needs."""
        fields: dict[str, Any] = {
            "precision": self.precision,
            "profile": self.profile.to_dict(),
            "onnx_sha256": self.onnx_sha256,
            "tensorrt_version": self.env.trt_version,
            "options": asdict(self.options),
        }
        level = self.options.hardware_compatibility
        if level == "none":
            fields["gpu_name"] = self.env.gpu_name
        if level in ("none", "same_cc"):
            fields["compute_capability"] = self.env.compute_capability
        return fields

    def key(self) -> str:
        canonical = json.dumps(self.key_fields(), sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
        return f"{self.precision}-{self.profile.describe()}-{digest}"


def is_engine_key(name: str) -> bool:
    return bool(_KEY_RE.match(name))


def stage_name(precision: str) -> str:
    """The manifest stage that builds the ``precision`` engine."""
    return f"build-engine-{precision}"


@dataclass(frozen=True)
class Sidecar:
    """``engines/<key>.json``: what the plan is, what it was built from, on what."""

    key: str
    spec: EngineSpec
    plan_sha256: str
    plan_bytes: int
    build_seconds: float
    built_at: str
    input_name: str
    input_shape: tuple[int, ...]  # (C, H, W)
    policy: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "format": SIDECAR_FORMAT,
            "key": self.key,
            "precision": spec.precision,
            "profile": spec.profile.to_dict(),
            "source_onnx": spec.source_onnx,
            "onnx_sha256": spec.onnx_sha256,
            "tensorrt_version": spec.env.trt_version,
            "gpu_name": spec.env.gpu_name,
            "compute_capability": spec.env.compute_capability,
            "options": asdict(spec.options),
            "input": {"name": self.input_name, "shape": list(self.input_shape)},
            "plan_sha256": self.plan_sha256,
            "plan_bytes": self.plan_bytes,
            "build_seconds": round(self.build_seconds, 3),
            "built_at": self.built_at,
            "policy": self.policy,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "sidecar") -> Sidecar:
        if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise BninceptionError(f"{where}: not a {SIDECAR_FORMAT} sidecar (format {found!r})")
        try:  # our own file, hashed beside its plan: read as written
            env = HostEnv(data["tensorrt_version"], data["gpu_name"], data["compute_capability"])
            spec = EngineSpec(data["precision"], BatchProfile.from_dict(data["profile"]), data["onnx_sha256"], env,
                              BuildOptions(**data["options"]))
            sidecar = cls(data["key"], spec, data["plan_sha256"], data["plan_bytes"], data["build_seconds"],
                          data["built_at"], data["input"]["name"], tuple(data["input"]["shape"]),
                          data.get("policy", {}))
        except (KeyError, TypeError, ValueError, BninceptionError) as exc:
            problem = str(exc) if isinstance(exc, BninceptionError) else f"{type(exc).__name__}: {exc}"
            raise BninceptionError(f"{where}: malformed engine sidecar ({problem})") from exc
        return sidecar


def _capability(text: str) -> tuple[int, int]:
    try:
        major, minor = text.split(".")
        return int(major), int(minor)
    except ValueError:
        raise BninceptionError(f"bad compute capability {text!r}") from None


def compatibility_problem(built: HostEnv, hardware_compatibility: str, here: HostEnv) -> str | None:
    """Why an engine built on ``built`` cannot run ``here`` (None when it can): TensorRT version, then GPU."""
    if built.trt_version != here.trt_version:
        return (f"it was built with TensorRT {built.trt_version} and this host has TensorRT "
                f"{here.trt_version}")
    if hardware_compatibility == "ampere_plus":
        if _capability(here.compute_capability) < (8, 0):
            return (f"it was built hardware-compatible for Ampere and newer (compute capability >= 8.0) "
                    f"and this GPU, {here.gpu_name}, has {here.compute_capability}")
        return None
    if built.compute_capability != here.compute_capability:
        return (f"it was built for {built.gpu_name} (compute capability {built.compute_capability}) and "
                f"this GPU is {here.gpu_name} (compute capability {here.compute_capability})")
    if hardware_compatibility == "none" and built.gpu_name != here.gpu_name:
        return f"it was built for {built.gpu_name} and this GPU is {here.gpu_name}"
    return None


def check_compatible(sidecar: Sidecar, here: HostEnv, plan: str = "engine") -> None:
    """Refuse, with a message that says which, an engine built for another GPU or TensorRT."""
    problem = compatibility_problem(sidecar.spec.env, sidecar.spec.options.hardware_compatibility, here)
    if problem:
        raise BninceptionError(f"refusing to load {plan}: {problem}; rebuild it here with "
                               f"`bninception build-engine --precision {sidecar.spec.precision}`")

"""Engine key, sidecar, compatibility refusal and batch-profile rules (no TensorRT needed)."""

from __future__ import annotations

import dataclasses

import pytest
from engine_fakes import A10, H100, RTX3090, T4

from bninception.core.errors import BninceptionError
from bninception.engines.detect import HostEnv
from bninception.engines.key import (
    BuildOptions,
    EngineSpec,
    Sidecar,
    check_compatible,
    compatibility_problem,
    is_engine_key,
)
from bninception.engines.profile import BatchProfile, profile_shapes

A10_NEWER_TRT = HostEnv("10.9.0.34", "NVIDIA A10", "8.6")
SHA = "ab" * 32


def spec(**changes) -> EngineSpec:
    base = EngineSpec(precision="fp16", profile=BatchProfile(1, 8, 32), onnx_sha256=SHA, env=A10,
                      options=BuildOptions())
    return dataclasses.replace(base, **changes)


def sidecar(s: EngineSpec | None = None) -> Sidecar:
    s = s or spec()
    return Sidecar(key=s.key(), spec=s, plan_sha256="cd" * 32, plan_bytes=1234, build_seconds=12.5,
                   built_at="2026-01-01T00:00:00+0000", input_name="input", input_shape=(1, 32, 32),
                   policy={"tf32": "default"})


def test_key_is_deterministic_readable_and_well_formed() -> None:
    key = spec().key()
    assert key == spec().key()
    assert key.startswith("fp16-1x8x32-") and is_engine_key(key)
    assert not is_engine_key("fp16-1x8x32-XYZ") and not is_engine_key("../etc/passwd")


@pytest.mark.parametrize("change", [
    {"precision": "int8"},
    {"profile": BatchProfile(1, 16, 32)},
    {"profile": BatchProfile(2, 8, 32)},
    {"onnx_sha256": "ef" * 32},
    {"env": A10_NEWER_TRT},
    {"env": RTX3090},
    {"env": H100},
    {"options": BuildOptions(workspace_gib=4)},
    {"options": BuildOptions(opt_level=5)},
    {"options": BuildOptions(hardware_compatibility="ampere_plus")},
])
def test_every_field_that_changes_the_plan_changes_the_key(change) -> None:
    assert spec(**change).key() != spec().key()


def test_hardware_compatible_keys_leave_out_what_the_plan_does_not_depend_on() -> None:
    def key(env: HostEnv, level: str) -> str:
        return spec(env=env, options=BuildOptions(hardware_compatibility=level)).key()

    # ampere_plus: one plan for every GPU of compute capability >= 8.0 (same TensorRT)
    assert key(A10, "ampere_plus") == key(H100, "ampere_plus") == key(RTX3090, "ampere_plus")
    assert "gpu_name" not in spec(options=BuildOptions(hardware_compatibility="ampere_plus")).key_fields()
    # same_cc: one plan per compute capability, whatever the GPU model
    assert key(A10, "same_cc") == key(RTX3090, "same_cc") != key(H100, "same_cc")
    fields = spec(options=BuildOptions(hardware_compatibility="same_cc")).key_fields()
    assert "gpu_name" not in fields and fields["compute_capability"] == "8.6"
    # none: the GPU model; the TensorRT version always
    assert len({key(A10, "none"), key(RTX3090, "none"), key(H100, "none")}) == 3
    for level in ("none", "same_cc", "ampere_plus"):
        assert key(A10, level) != key(A10_NEWER_TRT, level)
    assert len({key(A10, "none"), key(A10, "same_cc"), key(A10, "ampere_plus")}) == 3


def test_key_of_a_gpu_specific_engine_is_unchanged() -> None:
    """Engines built before the hardware-compatibility rule keep their key (no needless rebuild)."""
    import hashlib
    import json

    s = spec()
    old_fields = {"precision": "fp16", "profile": s.profile.to_dict(), "onnx_sha256": SHA,
                  "tensorrt_version": A10.trt_version, "gpu_name": A10.gpu_name,
                  "compute_capability": A10.compute_capability, "options": dataclasses.asdict(s.options)}
    digest = hashlib.sha256(json.dumps(old_fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert s.key() == f"fp16-1x8x32-{digest[:16]}"


def test_hardware_compatible_sidecar_round_trips_and_still_records_the_build_gpu() -> None:
    s = sidecar(spec(options=BuildOptions(hardware_compatibility="ampere_plus")))
    data = s.to_dict()
    assert data["gpu_name"] == "NVIDIA A10" and data["compute_capability"] == "8.6"
    assert Sidecar.from_dict(data) == s


def test_sidecar_round_trip_and_contents() -> None:
    s = sidecar()
    data = s.to_dict()
    for name in ("tensorrt_version", "gpu_name", "compute_capability", "precision", "profile",
                 "onnx_sha256", "build_seconds", "built_at", "plan_sha256"):
        assert name in data
    assert data["tensorrt_version"] == "10.8.0.43" and data["compute_capability"] == "8.6"
    assert data["source_onnx"] == "model.fp16.onnx"
    assert Sidecar.from_dict(data) == s


def test_malformed_sidecar_is_refused() -> None:
    with pytest.raises(BninceptionError, match="malformed engine sidecar"):
        Sidecar.from_dict({**sidecar().to_dict(), "profile": {"min": 1}}, where="x.json")
    with pytest.raises(BninceptionError, match="not a bninception-engine/1 sidecar"):
        Sidecar.from_dict({"format": "other"})


def test_refusal_names_the_tensorrt_versions() -> None:
    with pytest.raises(BninceptionError) as info:
        check_compatible(sidecar(), A10_NEWER_TRT, plan="engines/x.plan")
    message = str(info.value)
    assert "engines/x.plan" in message and "10.8.0.43" in message and "10.9.0.34" in message
    assert "--precision fp16" in message


def test_refusal_names_the_gpus() -> None:
    with pytest.raises(BninceptionError) as info:
        check_compatible(sidecar(), H100)
    assert "NVIDIA A10" in str(info.value) and "H100" in str(info.value) and "9.0" in str(info.value)
    # same compute capability, other GPU model: refused unless built hardware-compatible
    assert "RTX 3090" in (compatibility_problem(A10, "none", RTX3090) or "")
    assert compatibility_problem(A10, "same_cc", RTX3090) is None
    assert compatibility_problem(A10, "same_cc", H100) is not None


def test_ampere_plus_runs_on_newer_gpus_not_on_turing() -> None:
    assert compatibility_problem(A10, "ampere_plus", H100) is None
    problem = compatibility_problem(A10, "ampere_plus", T4)
    assert problem is not None and "7.5" in problem and "Tesla T4" in problem
    # the TensorRT version must still match exactly
    assert compatibility_problem(A10, "ampere_plus", A10_NEWER_TRT) is not None
    check_compatible(sidecar(), A10)  # the same host is fine


def test_profile_validation() -> None:
    assert BatchProfile(1, 8, 32).describe() == "1x8x32"
    assert BatchProfile.from_dict({"min": 2, "opt": 4, "max": 8}) == BatchProfile(2, 4, 8)
    for bad in ((0, 1, 2), (4, 2, 8), (1, 8, 4), (1, 1, 100000)):
        with pytest.raises(BninceptionError):
            BatchProfile(*bad)
    with pytest.raises(BninceptionError):
        BuildOptions(opt_level=6)
    with pytest.raises(BninceptionError):
        BuildOptions(workspace_gib=0)


def test_profile_shapes_for_dynamic_and_fixed_batch() -> None:
    profile = BatchProfile(1, 8, 32)
    assert profile_shapes((None, 3, 224, 224), profile) == ((1, 3, 224, 224), (8, 3, 224, 224),
                                                            (32, 3, 224, 224))
    assert profile_shapes((4, 1, 32, 32), BatchProfile(4, 4, 4)) == ((4, 1, 32, 32),) * 3
    with pytest.raises(BninceptionError, match="fixed batch of 4"):
        profile_shapes((4, 1, 32, 32), profile, "images")
    with pytest.raises(BninceptionError, match="only the batch axis may be dynamic"):
        profile_shapes((None, 1, None, 32), profile)
    with pytest.raises(BninceptionError, match="4-D NCHW"):
        profile_shapes((None, 10), profile)

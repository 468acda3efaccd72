"""The TensorRT 10.x / 11.x shim against fake modules generated from each version's real bindings.

The fakes (``tests/helpers/trt_api/fake.py``) have exactly the enum members and class attributes that
``python/src/infer/*.cpp`` of TensorRT release/10.8, release/10.13 and main (11.x) bind, recorded
in ``tests/helpers/trt_api/<version>.json`` by ``tests/helpers/trt_api/extract.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from trt_api import extract
from trt_api.fake import VERSIONS, api, fake_tensorrt

from bninception.core.errors import BninceptionError
from bninception.engines import shim

TRT_API = Path(__file__).resolve().parents[1] / "helpers" / "trt_api"
TEN = ("10.8", "10.13")


def config_of(trt):
    return trt.Builder(trt.Logger(trt.Logger.WARNING)).create_builder_config()


# -- the records themselves ------------------------------------------------------------------------
def test_records_name_their_source_and_version() -> None:
    refs = {"10.8": "release/10.8", "10.13": "release/10.13", "11.x": "main"}
    for version in VERSIONS:
        record = api(version)
        assert record["source"]["ref"] == refs[version] and len(record["source"]["commit"]) == 40
        assert record["tensorrt"].startswith(version.replace(".x", "."))
        assert not record["module"]["absent"], (version, record["module"]["absent"])


def test_records_hold_the_known_differences_between_versions() -> None:
    """Facts from the bindings source that the shim depends on (a regeneration must keep them true)."""
    hw = {v: set(api(v)["enums"]["HardwareCompatibilityLevel"]) for v in VERSIONS}
    assert hw["10.8"] == {"NONE", "AMPERE_PLUS"}  # SAME_COMPUTE_CAPABILITY first appears in 10.9
    assert "SAME_COMPUTE_CAPABILITY" in hw["10.13"] and "SAME_COMPUTE_CAPABILITY" in hw["11.x"]
    flags = {v: api(v)["enums"]["BuilderFlag"] for v in VERSIONS}
    for weak in shim.WEAK_TYPING_FLAGS:
        assert weak in flags["10.8"] and weak in flags["10.13"] and weak not in flags["11.x"]
    assert all(flags[v]["TF32"] == 6 for v in VERSIONS)
    creation = {v: api(v)["enums"]["NetworkDefinitionCreationFlag"] for v in VERSIONS}
    assert creation["10.8"] == {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1}
    assert creation["11.x"]["STRONGLY_TYPED"] == 0 and "EXPLICIT_BATCH" not in creation["11.x"]
    assert "platform_has_fast_fp16" in api("10.8")["classes"]["Builder"]
    assert "platform_has_fast_fp16" not in api("11.x")["classes"]["Builder"]
    assert "int8_calibrator" not in api("11.x")["classes"]["IBuilderConfig"]
    for version in VERSIONS:  # the signatures build.py relies on
        config = api(version)["classes"]["IBuilderConfig"]
        assert config["set_timing_cache"] == [["cache", "ignore_mismatch"]]
        assert config["create_timing_cache"] == [["serialized_timing_cache"]]
        assert api(version)["classes"]["OnnxParser"]["parse"] == [["model", "path="]]


def test_fake_exposes_exactly_the_recorded_api() -> None:
    eleven, ten = fake_tensorrt("11.x"), fake_tensorrt("10.8")
    config = config_of(eleven)
    with pytest.raises(AttributeError, match="int8_calibrator"):
        _ = config.int8_calibrator
    with pytest.raises(AttributeError):
        _ = eleven.BuilderFlag.FP16
    assert config_of(ten).int8_calibrator is None  # exists on 10.x (a property)
    with pytest.raises(TypeError, match="incompatible function arguments"):
        config.set_timing_cache(None, ignore_mismatch=False)
    with pytest.raises(TypeError, match="incompatible function arguments"):
        config.create_timing_cache(b"", "extra")
    with pytest.raises(AttributeError):
        config.made_up = 1


# -- the extractor ------------------------------------------------------------------------------------
BINDINGS = r'''
    py::class_<ILogger, PyLogger> baseLoggerBinding{m, "ILogger", ILoggerDoc::descr, py::module_local()};
    py::enum_<ILogger::Severity>(baseLoggerBinding, "Severity", py::arithmetic())
        .value("ERROR", ILogger::Severity::kERROR)  // a comment, with "quotes" and a ;
        .value("WARNING", ILogger::Severity::kWARNING)
        .export_values();
    baseLoggerBinding.def(py::init<>()).def("log", &ILogger::log, "severity"_a, "msg"_a);
    py::class_<IBuilderConfig>(m, "IBuilderConfig", IBuilderConfigDoc::descr)
        .def("set_timing_cache", [](IBuilderConfig& self, ITimingCache const& c, bool i) { return self.f(c, i); },
            "cache"_a, "ignore_mismatch"_a, py::keep_alive<1, 2>{})
        .def("create", &X::create, py::arg("strategy") = Strategy::kSTATIC)
        .def_property("level", &X::get, &X::set);
    py::enum_<BuilderFlag>(m, "BuilderFlag", py::arithmetic{})
        .value("FP16", BuilderFlag::kFP16)
        .value("TF32", BuilderFlag::kTF32);
    m.def("get_plugin_registry", &getPluginRegistry);
'''
HEADER = """
class ILogger { public: enum class Severity : int32_t { kERROR = 1, kWARNING, }; };
enum class BuilderFlag : int32_t
{
    kFP16 TRT_DEPRECATED_ENUM = 0, //!< comment
    kTF32 = 1U << 2,
};
"""


def test_extractor_reads_pybind_declarations_and_header_values() -> None:
    files = {path: "" for path in extract.BINDINGS}
    files["python/src/infer/pyCore.cpp"] = BINDINGS
    files["include/NvInferRuntime.h"] = HEADER
    files[extract.PY_INIT] = "import ##TENSORRT_MODULE##\ndef nptype(trt_type):\n    pass\n"
    record = extract.extract(files, "10.99", {"ref": "test"})
    classes, enums = record["classes"], record["enums"]
    assert classes["IBuilderConfig"] == {"create": [["strategy="]], "level": None,
                                         "set_timing_cache": [["cache", "ignore_mismatch"]]}
    assert classes["ILogger"]["log"] == [["severity", "msg"]] and classes["ILogger"]["__init__"] == [[]]
    assert {"Severity", "ERROR", "WARNING"} <= set(classes["ILogger"])  # nested enum, exported values
    assert enums["ILogger.Severity"] == {"ERROR": 1, "WARNING": 2}  # implicit value counted on
    assert enums["BuilderFlag"] == {"FP16": 0, "TF32": 4}
    assert record["functions"] == {"nptype": [["trt_type"]]}


def _mirror() -> str | None:
    candidate = os.environ.get("TENSORRT_SOURCE")
    return candidate if candidate and Path(candidate).exists() else None


@pytest.mark.skipif(_mirror() is None, reason="no TensorRT source clone ($TENSORRT_SOURCE) to regenerate from")
def test_records_match_a_fresh_extraction(tmp_path: Path) -> None:
    git = _mirror()
    assert git is not None
    for version in VERSIONS:
        ref = api(version)["source"]["ref"]
        try:
            files, number, commit = extract.read_git(git, ref)
        except (SystemExit, subprocess.CalledProcessError):
            pytest.skip(f"{git} has no {ref}")
        if commit != api(version)["source"]["commit"]:
            continue  # the branch moved on; the committed record names its own commit
        fresh = extract.extract(files, number, api(version)["source"])
        assert json.loads(json.dumps(fresh)) == api(version), version


# -- the shim on each version --------------------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
def test_major_version(version: str) -> None:
    assert shim.major_version(fake_tensorrt(version)) == (11 if version == "11.x" else 10)
    trt = fake_tensorrt(version)
    for bad in ("8.6.1", "9.3.0", "12.0.0"):
        trt.__version__ = bad
        with pytest.raises(BninceptionError, match=f"TensorRT {bad} is not supported"):
            shim.major_version(trt)
    del trt.__version__
    with pytest.raises(BninceptionError, match="cannot read the TensorRT version"):
        shim.major_version(trt)


@pytest.mark.parametrize("version", VERSIONS)
def test_strongly_typed_network_on_each_version(version: str) -> None:
    trt = fake_tensorrt(version)
    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    shim.create_network(trt, builder)
    flags = [e[1] for e in trt._state.events if e[0] == "create_network"]
    if version == "11.x":
        assert flags == [0]  # strongly typed by default; STRONGLY_TYPED is ignored, EXPLICIT_BATCH gone
    else:
        assert flags == [1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)] == [2]


@pytest.mark.parametrize("version", VERSIONS)
def test_fp32_clears_tf32_and_never_sets_a_precision_flag(version: str) -> None:
    trt = fake_tensorrt(version)
    config = config_of(trt)
    policy = shim.configure_precision(trt, config, "fp32")
    assert not config.get_flag(trt.BuilderFlag.TF32)
    assert config._flags == set()  # nothing else was set
    assert policy == {"strongly_typed": True, "tf32": "off", "network_flags": shim.network_flags(trt),
                      "trt_major": shim.major_version(trt)}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_reduced_precision_touches_no_flag(version: str, precision: str) -> None:
    trt = fake_tensorrt(version)
    config = config_of(trt)
    assert shim.configure_precision(trt, config, precision)["tf32"] == "default"
    assert config._flags == {trt.BuilderFlag.TF32}  # TensorRT's default, untouched


@pytest.mark.parametrize("version", VERSIONS)
def test_weak_typing_flags_known_per_version(version: str) -> None:
    trt = fake_tensorrt(version)
    present = shim.check_strongly_typed(trt, config_of(trt))
    assert present == ([] if version == "11.x" else list(shim.WEAK_TYPING_FLAGS))


@pytest.mark.parametrize("version", TEN)
def test_a_set_weak_typing_flag_is_an_error_on_10x(version: str) -> None:
    trt = fake_tensorrt(version)
    config = config_of(trt)
    config.set_flag(trt.BuilderFlag.FP16)
    config.set_flag(trt.BuilderFlag.INT8)
    with pytest.raises(BninceptionError, match="FP16, INT8"):
        shim.configure_precision(trt, config, "fp16")


@pytest.mark.parametrize("version", VERSIONS)
def test_hardware_compatibility(version: str) -> None:
    trt = fake_tensorrt(version)
    config = config_of(trt)
    level = trt.HardwareCompatibilityLevel
    shim.set_hardware_compatibility(trt, config, "none")
    assert config.hardware_compatibility_level == level.NONE
    shim.set_hardware_compatibility(trt, config, "ampere_plus")
    assert config.hardware_compatibility_level == level.AMPERE_PLUS
    with pytest.raises(BninceptionError, match="hardware compatibility must be one of"):
        shim.set_hardware_compatibility(trt, config, "turing")
    if version == "10.8":  # the image's TensorRT: refused clearly, nothing set
        assert shim.hardware_compatibility_levels(trt) == ["none", "ampere_plus"]
        with pytest.raises(BninceptionError, match=r"TensorRT 10\.8\.0\.43 has no hardware compatibility level "
                                                   r"SAME_COMPUTE_CAPABILITY; same_cc needs TensorRT 10\.9"):
            shim.set_hardware_compatibility(trt, config, "same_cc")
        assert config.hardware_compatibility_level == level.AMPERE_PLUS
    else:
        assert shim.hardware_compatibility_levels(trt) == ["none", "ampere_plus", "same_cc"]
        shim.set_hardware_compatibility(trt, config, "same_cc")
        assert config.hardware_compatibility_level == level.SAME_COMPUTE_CAPABILITY


def _api_names(version: str) -> set[str]:
    record = api(version)
    names = set(record["module"]["present"])
    for attrs in record["classes"].values():
        names |= set(attrs)
    for members in record["enums"].values():
        names |= set(members)
    return names


def test_engines_use_version_specific_api_only_through_the_shim() -> None:
    """A TensorRT name that some supported version lacks may appear only as a string (getattr/hasattr).

    Written as ``config.int8_calibrator``, ``trt.BuilderFlag.FP16`` or
    ``HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY`` it would raise AttributeError on the
    version without it (11.x, or 10.8 for the last one).
    """
    import ast

    per_version = [_api_names(v) for v in VERSIONS]
    partial = set.union(*per_version) - set.intersection(*per_version)
    assert {"FP16", "EXPLICIT_BATCH", "SAME_COMPUTE_CAPABILITY", "int8_calibrator"} <= partial
    engines = Path(__file__).resolve().parents[2] / "engines"
    used = []
    for path in sorted(engines.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr in partial:
                used.append(f"{path.name}:{node.lineno}: .{node.attr}")
    assert not used, used

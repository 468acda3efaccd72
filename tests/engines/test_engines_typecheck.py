"""mypy on engines/ against the TensorRT 10.8 (the image's) and 10.13 stubs, each verified to be in effect."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import typecheck  # tools/typecheck.py: developer tooling, not part of the package

ROOT = Path(__file__).resolve().parents[2]


def test_sanitize_repairs_only_the_unparseable_lines() -> None:
    text = ("    def on_shape_change(self: IPluginV3, in: list[PluginTensorDesc], out: list) -> None:\n"
            "            :arg in: The input tensors\n"
            "    def add_scale_nd(self, power: Weights = None, channel_axis: int) -> IScaleLayer:\n")
    fixed = typecheck.sanitize(text)
    assert "in_: list[PluginTensorDesc]" in fixed and ":arg in: The input" in fixed
    assert "channel_axis: int = ...)" in fixed
    compile(fixed.replace("    def", "def", 1).split("\n")[0] + "\n    ...\n", "probe", "exec")


def test_pinned_versions_are_the_image_and_a_current_10x() -> None:
    assert typecheck.ENGINES_DIR == ROOT / "engines"  # what `make lint` checks by default
    assert typecheck.STUB_VERSIONS[0].startswith("10.8.")  # nvcr.io/nvidia/tensorrt:25.01-py3
    assert typecheck._version_tuple(typecheck.STUB_VERSIONS[0]) < (10, 9) <= \
        typecheck._version_tuple(typecheck.STUB_VERSIONS[1])


def test_stubs_come_from_a_given_wheel_without_network(tmp_path: Path, monkeypatch) -> None:
    wheels = tmp_path / "given"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "tensorrt_stubs-10.0.0.1-py3-none-any.whl", "w") as wheel:
        for name in typecheck.STUB_FILES:
            wheel.writestr(name, '"""doc"""\ndef f(self, in: int) -> None: ...\n')
    monkeypatch.setenv(typecheck.WHEELS_ENV, str(wheels))
    stubs = typecheck.prepare_stubs(tmp_path / "stubs", "10.0.0.1", tmp_path / "cache")
    text = (stubs / "tensorrt_bindings/tensorrt.pyi").read_text()
    assert "in_: int" in text and '"""doc"""' not in text
    assert (stubs / ".version").read_text() == "10.0.0.1"


@pytest.mark.slow
@pytest.mark.parametrize("version", typecheck.STUB_VERSIONS)
def test_engines_type_check_against_tensorrt_stubs(version: str) -> None:
    workdir = ROOT / typecheck.DEFAULT_WORKDIR  # persistent: a warm run takes about a second
    workdir.mkdir(parents=True, exist_ok=True)
    ok, report = typecheck.typecheck([str(ROOT / "engines")], workdir, version)
    assert ok, report
    assert version in report

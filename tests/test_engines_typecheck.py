"""mypy on engines/ against the TensorRT 10.x stubs, with the stubs verified to be in effect."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest

from bninception.engines import typecheck

ROOT = Path(__file__).resolve().parents[1]


def stubs_installed() -> bool:
    try:
        distribution("tensorrt-stubs")
    except PackageNotFoundError:
        return False
    return True


def test_sanitize_repairs_only_the_unparseable_lines() -> None:
    text = ("    def on_shape_change(self: IPluginV3, in: list[PluginTensorDesc], out: list) -> None:\n"
            "            :arg in: The input tensors\n"
            "    def add_scale_nd(self, power: Weights = None, channel_axis: int) -> IScaleLayer:\n")
    fixed = typecheck.sanitize(text)
    assert "in_: list[PluginTensorDesc]" in fixed and ":arg in: The input" in fixed
    assert "channel_axis: int = ...)" in fixed
    compile(fixed.replace("    def", "def", 1).split("\n")[0] + "\n    ...\n", "probe", "exec")


@pytest.mark.slow
def test_engines_type_check_against_tensorrt_stubs() -> None:
    assert stubs_installed(), "tensorrt-stubs is not installed: pip install --no-deps tensorrt-stubs (make setup does)"
    workdir = ROOT / typecheck.DEFAULT_WORKDIR  # persistent: a warm run takes under a second
    workdir.mkdir(parents=True, exist_ok=True)
    ok, report = typecheck.typecheck([str(ROOT / "engines")], workdir)
    assert ok, report

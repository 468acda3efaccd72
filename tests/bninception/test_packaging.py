"""Packaging: stage folders install as bninception.* subpackages, nothing named plain `model`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_plain_model_is_not_importable_outside_the_repo(tmp_path: Path) -> None:
    probe = ("import importlib.util as u; import bninception.model.architecture, bninception.export; "
             "print([n for n in ('model', 'export', 'calibrate', 'engines', 'serve') if u.find_spec(n)])")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_wheel_maps_folders_into_the_package(tmp_path: Path) -> None:
    source = tmp_path / "src"  # setuptools builds in the source tree: build a copy, leave the repo clean
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "build", "*.egg-info",
                                                                "__pycache__", ".*_cache"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next(tmp_path.glob("bninception-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("bninception/cli.py", "bninception/commands/train.py", "bninception/evaluate/validate.py",
                   "bninception/model/architecture.py", "bninception/export/fold.py",
                   "bninception/calibrate/qdq.py", "bninception/engines/shim.py", "bninception/serve/app.py"):
        assert module in names, module
    assert not [name for name in names if "reproduce" in name or name.startswith("experiments/")]
    tops = {name.split("/")[0] for name in names}
    assert not tops & {"model", "export", "calibrate", "engines", "serve", "tests"}, tops


def test_cli_parser_imports_no_heavy_module() -> None:
    code = ("import sys; from bninception.cli import build_parser; "
            "build_parser(); print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'tensorrt', 'granian', "
            "'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", "heavy modules imported by --help"


def test_build_requirements_support_the_license_field() -> None:
    """``license = "MIT"`` (an SPDX string, PEP 639) needs setuptools >= 77; older ones refuse to build."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert isinstance(project["project"]["license"], str)
    setuptools = next(Requirement(r) for r in project["build-system"]["requires"] if r.startswith("setuptools"))
    assert not setuptools.specifier.contains("76.1") and setuptools.specifier.contains("77.0")

"""Each ONNX Runtime extra resolves to exactly one onnxruntime distribution (pip's own resolver).

The ONNX Runtime builds all own the ``onnxruntime`` package: two in one environment overwrite each
other and hide providers. ``pip install --dry-run --ignore-installed --report`` resolves the project
with each extra as a fresh environment would get it (the package indexes this host's pip uses;
metadata only, read with HTTP range requests, so the GB-sized CUDA wheels are not downloaded;
nothing is installed), and the report lists every distribution.

One stand-in: on PyPI, ``tensorrt-cu12-libs`` is a placeholder whose metadata step downloads the
real wheel from NVIDIA's index, which this host cannot reach. A metadata-only wheel of the same
name and version, without dependencies, stands in for it (pip prefers a wheel to an sdist), so its
own dependencies (NVIDIA's CUDA 12 runtime) are not in the [gpu] resolution here; everything else is.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

from check_install import ORT_BUILDS  # noqa: E402

# extras -> the ONNX Runtime builds it must bring; dev must bring none, or [dev,gpu] would hold two
EXTRAS = {"": [], "cpu": ["onnxruntime"], "gpu": ["onnxruntime-gpu"], "openvino": ["onnxruntime-openvino"],
          "dev": []}
PLACEHOLDER = "tensorrt-cu12-libs"


def stand_in_wheel(folder: Path) -> Path:
    """A metadata-only wheel of the [gpu] extra's pinned PLACEHOLDER (see the module docstring)."""
    gpu = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gpu"]
    (version,) = [m.group(1) for r in gpu if (m := re.fullmatch(rf"{PLACEHOLDER}==(\S+)", r.replace(" ", "")))]
    dist = f"{PLACEHOLDER.replace('-', '_')}-{version}"
    wheel = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"{dist}.dist-info/METADATA",
                         f"Metadata-Version: 2.1\nName: {PLACEHOLDER}\nVersion: {version}\n")
        archive.writestr(f"{dist}.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                                    "Tag: py3-none-any\n")
        archive.writestr(f"{dist}.dist-info/RECORD", "")
    return wheel


def resolve(project: Path, extras: str, out: Path, links: Path) -> dict[str, str]:
    """{distribution name: version} that pip would install for ``project[extras]`` from scratch."""
    target = f"{project}[{extras}]" if extras else str(project)
    report = out / f"report-{extras.replace(',', '-') or 'none'}.json"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                             "--no-build-isolation", "--no-cache-dir", "--use-feature=fast-deps",
                             "--disable-pip-version-check", "--find-links", str(links),
                             "--report", str(report), target],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, f"pip cannot resolve [{extras}]:\n{result.stderr[-3000:]}"
    return {item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
            for item in json.loads(report.read_text())["install"]}


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """Every extra's resolution, in parallel, of a copy of the project (its build writes egg-info)."""
    tmp = tmp_path_factory.mktemp("extras")
    project = tmp / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    folders = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values()
    for folder in set(folders):
        shutil.copytree(ROOT / folder, project / folder, ignore=shutil.ignore_patterns("__pycache__"))
    links = tmp / "links"
    links.mkdir()
    stand_in_wheel(links)
    with ThreadPoolExecutor(max_workers=len(EXTRAS)) as pool:
        futures = {extras: pool.submit(resolve, project, extras, tmp, links) for extras in EXTRAS}
        return {extras: future.result() for extras, future in futures.items()}


@pytest.mark.slow
@pytest.mark.parametrize("extras", list(EXTRAS), ids=[e or "no-extra" for e in EXTRAS])
def test_each_extra_resolves_to_exactly_one_onnx_runtime(resolved: dict[str, dict[str, str]], extras: str) -> None:
    builds = sorted(name for name in resolved[extras] if name in ORT_BUILDS)
    assert builds == EXTRAS[extras], f"[{extras}] resolves to ONNX Runtime builds {builds}"
    assert "onnxscript" not in resolved[extras], "onnxscript is no dependency: nothing imports it"


@pytest.mark.slow
def test_gpu_extra_is_the_cuda_12_tensorrt_of_its_onnx_runtime(resolved: dict[str, dict[str, str]]) -> None:
    """onnxruntime-gpu 1.21 is built against TensorRT 10.8 and CUDA 12: no CUDA 13 TensorRT beside it."""
    gpu = resolved["gpu"]
    assert gpu["onnxruntime-gpu"].startswith("1.21."), gpu["onnxruntime-gpu"]
    for name in ("tensorrt-cu12", "tensorrt-cu12-libs", "tensorrt-cu12-bindings"):
        assert gpu.get(name) == "10.8.0.43", (name, gpu.get(name))
    assert not [n for n in gpu if n == "tensorrt" or n.startswith("tensorrt-cu13")], sorted(gpu)
    assert {"nvidia-cudnn-cu12", "nvidia-cuda-runtime-cu12"} <= set(gpu), "onnxruntime-gpu's CUDA 12 libraries"

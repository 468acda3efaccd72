"""Type-check ``engines/`` against the TensorRT Python API of 10.8 (the image's) and 10.13 (``tensorrt-stubs``).

``tensorrt-stubs`` installs ``tensorrt/__init__.pyi`` without a ``py.typed`` marker (mypy then
skips it and every ``tensorrt`` name silently becomes ``Any``), and its generated
``tensorrt_bindings/tensorrt.pyi`` does not parse (parameters named ``in``; a required parameter
after defaulted ones). For each pinned stub version this tool gets the wheel (the installed
distribution when its version matches, else ``pip download --no-deps`` into a cache folder),
copies the three stub files into a ``mypy_path``, repairing exactly those lines, and runs mypy.
Per version, a probe that misuses the API must be reported (the stubs are in effect) and a probe
of an attribute that version lacks or has must be reported or not (it is the version claimed:
``HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY`` first appears in 10.9).

    python tools/typecheck.py                 # engines/ against every pinned version
    python tools/typecheck.py --stubs 10.8.0.43.1 PATH ...

Needs PyPI access the first time a version is not installed (or the wheels in
``$BNINCEPTION_STUBS_WHEELS``); the extracted stubs and mypy's cache are kept under
``.mypy_cache/bninception-tensorrt/``, so warm runs take about a second per version.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import zipfile
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

STUB_FILES = ("tensorrt/__init__.pyi", "tensorrt_bindings/__init__.pyi", "tensorrt_bindings/tensorrt.pyi")
STUB_VERSIONS = ("10.8.0.43.1", "10.13.0.35.1")  # the NGC 25.01 image's TensorRT, and a current 10.x
WHEELS_ENV = "BNINCEPTION_STUBS_WHEELS"
ENGINES_DIR = Path(__file__).resolve().parents[1] / "engines"
DEFAULT_WORKDIR = Path(".mypy_cache") / "bninception-tensorrt"
PROBE = '''\
import tensorrt as trt


def probe() -> None:
    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    builder.create_network_v2(0)  # no such method: mypy must say so


def probe_version() -> object:
    return trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY  # 10.9 and later only
'''
PROBE_ERROR = '"Builder" has no attribute "create_network_v2"'
VERSION_PROBE_ERROR = 'has no attribute "SAME_COMPUTE_CAPABILITY"'


def sanitize(text: str) -> str:
    """Make the generated stub parseable without changing any signature we use."""
    text = re.sub(r'"""[\s\S]*?"""', "...", text)  # docstrings: most of the 0.5 MB mypy parses
    text = re.sub(r"(?<=[(,] )in(?=: )", "in_", text)  # parameter named like the keyword
    bad = "power: Weights = None, channel_axis: int)"
    return text.replace(bad, bad[:-1] + " = ...)")


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version))


def _installed(version: str) -> dict[str, str] | None:
    """The stub files of the installed ``tensorrt-stubs`` when it is ``version``."""
    try:
        dist = distribution("tensorrt-stubs")
    except PackageNotFoundError:
        return None
    if dist.version != version:
        return None
    files = {}
    for name in STUB_FILES:
        source = Path(str(dist.locate_file(name)))
        if not source.is_file():
            return None
        files[name] = source.read_text(encoding="utf-8")
    return files


def _wheel(version: str, wheels: Path) -> Path:
    """The ``tensorrt-stubs`` wheel of ``version``: from ``$BNINCEPTION_STUBS_WHEELS``, the cache, or PyPI."""
    pattern = f"tensorrt_stubs-{version}-*.whl"
    for folder in (Path(os.environ[WHEELS_ENV]) if os.environ.get(WHEELS_ENV) else None, wheels):
        if folder is not None and (found := sorted(folder.glob(pattern))):
            return found[0]
    wheels.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                             f"tensorrt-stubs=={version}", "-d", str(wheels)],
                            capture_output=True, text=True, check=False)
    found = sorted(wheels.glob(pattern))
    if result.returncode != 0 or not found:
        why = result.stderr.strip()[-300:] or "no wheel found"
        raise SystemExit(f"cannot get tensorrt-stubs {version}: `pip download` failed ({why}); "
                         f"give PyPI access once, or put the wheel in ${WHEELS_ENV}")
    return found[0]


def prepare_stubs(dest: Path, version: str, wheels: Path) -> Path:
    """Sanitized stub files of tensorrt-stubs ``version`` under ``dest`` (reused when already there)."""
    marker = dest / ".version"
    if marker.is_file() and marker.read_text() == version and all((dest / n).is_file() for n in STUB_FILES):
        return dest
    files = _installed(version)
    if files is None:
        with zipfile.ZipFile(_wheel(version, wheels)) as wheel:
            names = set(wheel.namelist())
            missing = [n for n in STUB_FILES if n not in names]
            if missing:
                raise SystemExit(f"tensorrt-stubs {version} has no {missing}")
            files = {n: wheel.read(n).decode("utf-8") for n in STUB_FILES}
    for name, text in files.items():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(sanitize(text), encoding="utf-8")
    marker.write_text(version)
    return dest


def _config(stubs: Path, workdir: Path) -> Path:
    config = workdir / "mypy.ini"
    config.write_text(
        "[mypy]\n"
        "python_version = 3.11\n"
        "ignore_missing_imports = True\n"
        f"mypy_path = {stubs}\n"
        "warn_unused_ignores = True\n"
        # the generated stubs have their own nits (``-> ...`` annotations); we check our code
        "[mypy-tensorrt.*,tensorrt_bindings.*]\n"
        "ignore_errors = True\n"
        # torch's own annotations are checked by the project-wide mypy; following them here
        # would multiply this check's time by ten
        "[mypy-torch.*,onnx.*,onnxruntime.*]\n"
        "follow_imports = skip\n"
    )
    return config


def typecheck(paths: list[str], workdir: Path, version: str = STUB_VERSIONS[-1]) -> tuple[bool, str]:
    """Run mypy on ``paths`` plus the probes against tensorrt-stubs ``version``; (ok, report).

    ``workdir`` keeps the stubs, the downloaded wheels and mypy's cache between runs.
    """
    home = workdir / f"stubs-{version}"
    home.mkdir(parents=True, exist_ok=True)
    stubs = prepare_stubs(home / "stubs", version, workdir / "wheels")
    probe = home / "probe_tensorrt_api.py"
    probe.write_text(PROBE)
    result = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(_config(stubs, home)),
                             "--cache-dir", str(home / "cache"), str(probe), *paths],
                            capture_output=True, text=True, check=False)
    lines = result.stdout.splitlines()
    errors = [ln for ln in lines if ": error:" in ln and Path(ln.split(":")[0]).name != probe.name]
    if not any(PROBE_ERROR in ln for ln in lines):
        return False, (f"the TensorRT {version} stubs are not in effect: mypy accepted a call to a missing method\n"
                       + result.stdout + result.stderr)
    lacks_same_cc = _version_tuple(version) < (10, 9)
    if any(VERSION_PROBE_ERROR in ln for ln in lines) != lacks_same_cc:
        return False, (f"the stubs in effect are not TensorRT {version}'s: SAME_COMPUTE_CAPABILITY is "
                       f"{'present' if lacks_same_cc else 'missing'}\n" + result.stdout)
    if errors or result.returncode not in (0, 1):
        return False, f"TensorRT {version} API:\n" + "\n".join(errors) + "\n" + result.stderr
    return True, f"mypy: no issues in {' '.join(paths)} against the TensorRT {version} API stubs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="type-check engines/ against TensorRT API stubs")
    parser.add_argument("--stubs", default=",".join(STUB_VERSIONS),
                        help="comma-separated tensorrt-stubs versions (default: %(default)s)")
    parser.add_argument("paths", nargs="*", default=[str(ENGINES_DIR)])
    args = parser.parse_args(argv)
    DEFAULT_WORKDIR.mkdir(parents=True, exist_ok=True)
    failed = 0
    for version in [v.strip() for v in args.stubs.split(",") if v.strip()]:
        ok, report = typecheck(list(args.paths), DEFAULT_WORKDIR, version)
        print(report, file=sys.stdout if ok else sys.stderr)
        failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Type-check ``engines/`` against the TensorRT 10.x Python API (the ``tensorrt-stubs`` package).

``tensorrt-stubs`` installs ``tensorrt/__init__.pyi`` without a ``py.typed`` marker (mypy then
skips it and every ``tensorrt`` name silently becomes ``Any``), and its generated
``tensorrt_bindings/tensorrt.pyi`` does not parse (parameters named ``in``; a required parameter
after defaulted ones). This tool copies the three stub files into a temporary ``mypy_path``,
repairing exactly those lines, and runs mypy with them, so calls such as
``builder.create_network(...)`` are really checked. It also type-checks a probe that misuses the
API and fails if mypy does *not* report it, proving the stubs are in effect.

    python -m bninception.engines.typecheck            # checks the engines/ folder
    python -m bninception.engines.typecheck PATH ...
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

STUB_FILES = ("tensorrt/__init__.pyi", "tensorrt_bindings/__init__.pyi", "tensorrt_bindings/tensorrt.pyi")
ENGINES_DIR = Path(__file__).resolve().parent
PROBE = '''\
import tensorrt as trt


def probe() -> None:
    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    builder.create_network_v2(0)  # no such method: mypy must say so
'''
PROBE_ERROR = '"Builder" has no attribute "create_network_v2"'


def sanitize(text: str) -> str:
    """Make the generated stub parseable without changing any signature we use."""
    text = re.sub(r'"""[\s\S]*?"""', "...", text)  # docstrings: most of the 0.5 MB mypy parses
    text = re.sub(r"(?<=[(,] )in(?=: )", "in_", text)  # parameter named like the keyword
    bad = "power: Weights = None, channel_axis: int)"
    return text.replace(bad, bad[:-1] + " = ...)")


def prepare_stubs(dest: Path) -> Path:
    try:
        dist = distribution("tensorrt-stubs")
    except PackageNotFoundError:
        raise SystemExit("tensorrt-stubs is not installed: pip install --no-deps tensorrt-stubs") from None
    for name in STUB_FILES:
        source = Path(str(dist.locate_file(name)))
        if not source.is_file():
            raise SystemExit(f"tensorrt-stubs has no {name} (looked at {source})")
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(sanitize(source.read_text(encoding="utf-8")), encoding="utf-8")
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
        "[mypy-torch.*,onnx.*]\n"
        "follow_imports = skip\n"
    )
    return config


def typecheck(paths: list[str], workdir: Path) -> tuple[bool, str]:
    """Run mypy on ``paths`` plus the probe; (ok, report). Reuses ``workdir`` as a cache."""
    stubs = prepare_stubs(workdir / "stubs")
    probe = workdir / "probe_tensorrt_api.py"
    probe.write_text(PROBE)
    result = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(_config(stubs, workdir)),
                             "--cache-dir", str(workdir / "cache"), str(probe), *paths],
                            capture_output=True, text=True, check=False)
    lines = result.stdout.splitlines()
    errors = [ln for ln in lines if ": error:" in ln and Path(ln.split(":")[0]).name != probe.name]
    if not any(PROBE_ERROR in ln for ln in lines):
        return False, ("the TensorRT stubs are not in effect: mypy accepted a call to a missing method\n"
                       + result.stdout + result.stderr)
    if errors or result.returncode not in (0, 1):
        return False, "\n".join(errors) + "\n" + result.stderr
    return True, f"mypy: no issues in {' '.join(paths)} (TensorRT {STUB_VERSION_HINT} API stubs in effect)"


STUB_VERSION_HINT = "10.x"
DEFAULT_WORKDIR = Path(".mypy_cache") / "bninception-tensorrt"


def main(argv: list[str] | None = None) -> int:
    paths = list(argv if argv is not None else sys.argv[1:]) or [str(ENGINES_DIR)]
    DEFAULT_WORKDIR.mkdir(parents=True, exist_ok=True)
    ok, report = typecheck(paths, DEFAULT_WORKDIR)
    print(report, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

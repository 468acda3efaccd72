"""The [serve] extra has no upper pin on the HTTP server: upgraded to the newest releases of every one of
its requirements in a fresh environment, the HTTP tests still pass."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HTTP_TESTS = ["tests/serve/test_serve_http.py", "tests/serve/test_serve_hostile_http_clients.py",
              "tests/serve/test_serve_uploads_and_slow_clients.py", "tests/serve/test_serve_asgi.py"]
OFFLINE = ("Could not fetch", "NewConnectionError", "Temporary failure in name resolution", "Network is unreachable")


def serve_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(project["project"]["optional-dependencies"]["serve"])


def test_the_serve_extra_pins_no_upper_bound_on_the_http_server() -> None:
    from packaging.requirements import Requirement

    for line in serve_requirements():
        requirement = Requirement(line)
        if requirement.name in ("granian", "starlette", "python-multipart", "uvloop"):
            assert not any(spec.operator in ("<", "<=", "==", "~=") for spec in requirement.specifier), line


@pytest.mark.slow
def test_http_tests_pass_with_the_newest_serve_requirements(tmp_path: Path) -> None:
    env = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=300)
    python = env / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # this environment (torch, the project, the test tools) behind the fresh one's own packages
    Path(site, "inherit.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", "--upgrade", "--ignore-installed",
                                *serve_requirements()],
                               capture_output=True, text=True, timeout=900)
    if installed.returncode != 0 and any(sign in installed.stderr for sign in OFFLINE):
        pytest.skip(f"no package index reachable: {installed.stderr.strip().splitlines()[-1]}")
    assert installed.returncode == 0, installed.stderr[-3000:]
    versions = subprocess.run([str(python), "-m", "pip", "list", "--path", site, "--format", "freeze"],
                              capture_output=True, text=True, check=True).stdout
    assert "granian==" in versions, versions
    ran = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *HTTP_TESTS], cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    assert ran.returncode == 0, f"with {versions}\n{ran.stdout[-4000:]}"

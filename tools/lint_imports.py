"""`lint-imports` on the package as it installs: the stage folders (core/, model/, ...) copied under
bninception/ in a temporary tree (import-linter walks one package folder; setuptools' package-dir
mapping is not one), then import-linter's contracts from pyproject.toml checked against it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def installed_layout(into: Path) -> Path:
    """The package tree a wheel holds, copied into ``into`` (Python files only)."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in sorted(mapping.items()):
        target = into.joinpath(*package.split("."))
        shutil.copytree(ROOT / folder, target, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "tests"))
    return into


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """import-linter's report on the package tree ``tree`` (from :func:`installed_layout`)."""
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(lint), str(ROOT / "pyproject.toml"), "--no-cache"], env={**os.environ,
                          "PYTHONPATH": str(tree)}, cwd=tree, capture_output=True, text=True, check=False, timeout=300)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bninception-imports-") as tmp:
        report = lint_imports(installed_layout(Path(tmp)))
    print(report.stdout, end="")
    print(report.stderr, end="", file=sys.stderr)
    return report.returncode


if __name__ == "__main__":
    raise SystemExit(main())

"""docs/ARCHITECTURE.md stays true: every `module:name` it lists imports, and the import contracts hold."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
NAMED = sorted(set(re.findall(r"`(bninception(?:\.\w+)+):(\w+)`", PAGE)))


@pytest.mark.parametrize(("module", "name"), NAMED)
def test_every_named_module_and_name_exists(module: str, name: str) -> None:
    assert hasattr(importlib.import_module(module), name), f"{module} has no {name}"


def test_the_page_names_every_shared_module() -> None:
    assert len(NAMED) > 30
    for module in ("core.layout", "core.metadata", "core.gates", "core.ort", "core.runner", "core.stage"):
        assert f"bninception.{module}:" in PAGE, module


def test_the_import_contracts_hold_and_can_fail(tmp_path: Path) -> None:
    """The layers in pyproject.toml (import-linter) hold for the package as it installs, and a stage that
    imports a later one breaks them."""
    from lint_imports import installed_layout, lint_imports

    tree = installed_layout(tmp_path / "tree")
    kept = lint_imports(tree)
    assert kept.returncode == 0 and "2 kept, 0 broken" in kept.stdout, kept.stdout[-3000:]
    errors = tree / "bninception" / "core" / "errors.py"
    errors.write_text(errors.read_text() + "\nfrom bninception.evaluate import tables  # noqa\n")
    broken = lint_imports(tree)
    assert broken.returncode != 0 and "bninception.core.errors -> bninception.evaluate.tables" in broken.stdout

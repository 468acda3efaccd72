"""docs/ARCHITECTURE.md stays true: every `module:name` it lists imports, and the layering holds."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
NAMED = sorted(set(re.findall(r"`(bninception(?:\.\w+)+):(\w+)`", PAGE)))
STAGES = ["core", "model", "export", "calibrate", "engines", "serve"]  # folder -> bninception.<folder>
ALLOWED = {  # which bninception.* packages each folder may import
    "core": {"core"}, "model": {"core", "model"}, "export": {"core", "model", "export"},
    "calibrate": {"core", "model", "export", "calibrate"},
    "engines": {"core", "model", "export", "calibrate", "engines"},
    "serve": {"core", "serve", "engines"},  # engines.store: the one sidecar reader (triton-repo, --engine)
}


@pytest.mark.parametrize(("module", "name"), NAMED)
def test_every_named_module_and_name_exists(module: str, name: str) -> None:
    assert hasattr(importlib.import_module(module), name), f"{module} has no {name}"


def test_the_page_names_every_shared_module() -> None:
    assert len(NAMED) > 30
    for module in ("core.layout", "core.metadata", "core.gates", "core.ort", "core.runner", "core.stage"):
        assert f"bninception.{module}:" in PAGE, module


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bninception"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("bninception")}
    return found


@pytest.mark.parametrize("folder", STAGES)
def test_stages_import_only_earlier_stages_and_core(folder: str) -> None:
    for path in sorted((ROOT / folder).glob("*.py")):
        for module in _imports(path):
            parts = module.split(".")
            package = parts[1] if len(parts) > 1 else ""
            assert package in ALLOWED[folder], f"{path.relative_to(ROOT)} imports {module}"

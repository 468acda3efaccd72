"""Each stage folder names what other layers may use (``__all__``), those names are documented, and no layer
imports another's name that is not on that list."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STAGES = ["core", "model", "export", "calibrate", "engines", "evaluate", "serve"]
PACKAGE_FOLDERS = [*STAGES, "bninception"]


@pytest.mark.parametrize("stage", STAGES)
def test_every_public_name_resolves_and_is_documented(stage: str) -> None:
    package = importlib.import_module(f"bninception.{stage}")
    assert package.__all__, stage
    for name in package.__all__:
        obj = getattr(package, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert (obj.__doc__ or "").strip(), f"bninception.{stage}.{name} has no docstring"


def cross_layer_imports() -> list[tuple[str, str, str]]:
    """(file, stage, name) for every ``from bninception.<stage>.<module> import name`` outside ``stage``."""
    found = []
    for folder in PACKAGE_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bninception.")):
                    continue
                parts = node.module.split(".")
                if parts[1] in STAGES and parts[1] != folder and len(parts) > 2:
                    found += [(str(path.relative_to(ROOT)), parts[1], alias.name) for alias in node.names]
    return found


def test_layers_use_only_each_others_public_names() -> None:
    imports = cross_layer_imports()
    assert len(imports) > 50
    outside = sorted({f"{file}: bninception.{stage}.{name}" for file, stage, name in imports
                      if name not in importlib.import_module(f"bninception.{stage}").__all__})
    assert not outside, outside

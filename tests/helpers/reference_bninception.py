"""Load pretrainedmodels' BN-Inception file directly (its package __init__ imports torchvision)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest


def reference_module() -> ModuleType:
    spec = importlib.util.find_spec("pretrainedmodels")
    if spec is None or spec.submodule_search_locations is None:
        pytest.fail("pretrainedmodels is not installed: `pip install --no-deps pretrainedmodels` (make setup does)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "bninception.py"
    file_spec = importlib.util.spec_from_file_location("reference_bninception_file", path)
    assert file_spec is not None and file_spec.loader is not None
    module = importlib.util.module_from_spec(file_spec)
    file_spec.loader.exec_module(module)
    return module

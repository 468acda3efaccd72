"""A stage folder's public surface: the names other layers may use, imported from their modules on first use
(so that importing a stage stays cheap: torch, onnx and onnxruntime load only with what needs them)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def public_surface(package: str, where: dict[str, str]) -> tuple[list[str], Callable[[str], Any]]:
    """``(__all__, __getattr__)`` for ``package``: ``where`` maps each public name to its module (relative to
    the package); an unknown name is an AttributeError, as for any module."""

    def attribute(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{where[name]}"), name)

    return sorted(where), attribute

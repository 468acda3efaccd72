"""The Docker tests: the static ones run with the suite; the ones that build and run images (marked
``docker``) run in ``make docker-test``."""

from __future__ import annotations

import pytest

ENGINE_TESTS = {"test_cpu_image.py", "test_perf_analyzer.py", "test_serve_image.py"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in ENGINE_TESTS:
            item.add_marker(pytest.mark.docker)

#!/usr/bin/env python3
"""Print the project's requirements (dependencies plus the named extras) from pyproject.toml.

The Dockerfile installs these in a layer of their own before it copies the code, so that a change
to the code alone does not reinstall every dependency:

    python3 requirements.py pyproject.toml serve cpu > requirements.txt
    python3 requirements.py --extras-only pyproject.toml serve cpu   # the serving image: no torch

References to the project itself (``bninception[...]`` in an extra) are followed, not printed.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path


def requirements(pyproject: Path, extras: list[str], extras_only: bool = False) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    name, optional = project["name"], project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        raise SystemExit(f"{pyproject} has no extra {unknown}; it has {sorted(optional)}")
    out: list[str] = []
    pending, seen = list(extras), set()
    lines = [] if extras_only else list(project.get("dependencies", []))
    while pending:
        extra = pending.pop(0)
        if extra in seen:
            continue
        seen.add(extra)
        lines.extend(optional[extra])
    for line in lines:
        own = re.fullmatch(rf"{re.escape(name)}\[([^]]+)\]", line.replace(" ", ""))
        if own:
            out.extend(requirements(pyproject, own.group(1).split(","), extras_only))
        elif line not in out:
            out.append(line)
    return list(dict.fromkeys(out))


def main(argv: list[str]) -> int:
    extras_only = argv[:1] == ["--extras-only"]
    argv = argv[1:] if extras_only else argv
    if not argv:
        raise SystemExit("usage: requirements.py [--extras-only] PYPROJECT [EXTRA ...]")
    print("\n".join(requirements(Path(argv[0]), argv[1:], extras_only)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

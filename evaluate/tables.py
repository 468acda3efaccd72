"""Tables for people: aligned plain-text columns or Markdown, and the number formats they share."""

from __future__ import annotations

from typing import Any


def pct(value: Any, digits: int = 2, missing: str = "-") -> str:
    """A share as a percentage; ``missing`` for none or NaN."""
    return missing if value is None or value != value else f"{100.0 * float(value):.{digits}f}%"


def render(head: list[str], body: list[list[str]], markdown: bool = False) -> list[str]:
    """The lines of a table: ``head`` over ``body`` rows."""
    if markdown:
        return ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|",
                *("| " + " | ".join(map(str, row)) + " |" for row in body)]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*row).rstrip() for row in (head, ["-" * w for w in widths], *body)]

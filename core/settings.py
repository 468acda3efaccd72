"""Settings records whose fields carry their command-line option: help, flag, bounds, choices.

One mechanism for every record the CLI sets (``ServeConfig``, ``TrainConfig``): the options, their
defaults and the range checks all come from the fields.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import Field, field, fields
from typing import Any

from bninception.core.errors import BninceptionError


def setting(default: Any, help_text: str, low: float | None = None, above: bool = False,
            high: float | None = None, flag: str = "", choices: tuple[str, ...] | None = None) -> Any:
    """A field with its ``--flag`` (default: from the name), help, choices and bounds: ``low`` (``above``:
    strictly) and ``high`` (inclusive)."""
    return field(default=default, metadata={"help": help_text, "low": low, "above": above, "high": high,
                                            "flag": flag, "choices": choices})


def flag_of(item: Field[Any]) -> str:
    """A field's command-line option name, without the dashes."""
    return str(item.metadata.get("flag") or item.name.replace("_", "-"))


def check_settings(record: Any, what: str) -> None:
    """Refuse non-finite numbers, values outside a field's bounds or its choices, in one error."""
    problems = []
    for item in fields(record):
        value = getattr(record, item.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise BninceptionError(f"{item.name.replace('_', '-')} must be a finite number, got {value}")
        low, above = item.metadata.get("low"), item.metadata.get("above")
        if low is not None and value is not None and (value <= low if above else value < low):
            problems.append(f"{flag_of(item)} {'>' if above else '>='} {low}")
        high = item.metadata.get("high")
        if high is not None and value is not None and value > high:
            problems.append(f"{flag_of(item)} <= {high}")
        if item.metadata.get("choices") and value not in item.metadata["choices"]:
            problems.append(f"{flag_of(item)} in {', '.join(item.metadata['choices'])}")
    if problems:
        raise BninceptionError(f"{what} out of range: need {', '.join(problems)}")


def add_options(parser: argparse.ArgumentParser | Any, record: type, names: tuple[str, ...] | None = None) -> None:
    """One option per field of ``record`` that has help (of ``names`` only, when given), with its default."""
    for item in fields(record):
        if "help" not in item.metadata or (names is not None and item.name not in names):
            continue
        option, kind = f"--{flag_of(item)}", type(item.default)
        if kind is bool:
            parser.add_argument(option, action=argparse.BooleanOptionalAction, default=item.default,
                                dest=item.name, help=item.metadata["help"])
        else:
            shown = "" if item.default is None else " (default: %(default)s)"
            parser.add_argument(option, type=int if item.default is None else kind, default=item.default,
                                dest=item.name, choices=item.metadata["choices"],
                                metavar=None if kind is str else "N", help=item.metadata["help"] + shown)


def options_of(args: argparse.Namespace, record: type) -> dict[str, Any]:
    """The values ``args`` holds for ``record``'s option fields."""
    return {f.name: getattr(args, f.name) for f in fields(record) if "help" in f.metadata and hasattr(args, f.name)}

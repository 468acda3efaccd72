"""The run directory and its ``manifest.json``: artifacts, their hashes and the stage records.

Each stage records the parameters it ran with, the sha256 of each input and of each output.
A stage is *fresh* (skipped on re-run, like make) when its parameters match, its inputs still
have the recorded hashes and its outputs exist with the recorded hashes.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bninception.core.errors import BninceptionError
from bninception.core.files import atomic_write_json, sha256_file

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "bninception-manifest/1"


def _jsonable(value: Any) -> Any:
    """Normalise parameters so that a round trip through JSON compares equal."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _manifest_problem(data: dict[str, Any]) -> str | None:
    """What is structurally wrong with a parsed manifest (None when every reader's assumption holds)."""
    if not isinstance(data["stages"], dict) or not isinstance(data["artifacts"], dict):
        return "'stages' and 'artifacts' must be objects"
    for name, record in data["stages"].items():
        if not isinstance(record, dict):
            return f"stage {name!r} is not an object"
        for group in ("inputs", "outputs"):
            hashes = record.get(group, {})
            if not isinstance(hashes, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                       for k, v in hashes.items()):
                return f"stage {name!r} {group} must map file names to sha256 strings"
        if not isinstance(record.get("params", {}), dict):
            return f"stage {name!r} params must be an object"
    return None


@dataclass
class RunDir:
    """A run folder (``runs/NAME``) with its manifest."""

    root: Path
    _hash_cache: dict[tuple[str, int, int], str] = field(default_factory=dict, repr=False)

    def __init__(self, root: str | os.PathLike[str], create: bool = True) -> None:
        self.root = Path(root)
        self._hash_cache = {}
        if self.root.exists() and not self.root.is_dir():
            raise BninceptionError(f"--run {self.root} is a file, not a run directory")
        if create:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise BninceptionError(f"cannot create run directory {self.root}: {exc.strerror or exc}") from exc
        elif not self.root.is_dir():
            raise BninceptionError(f"run directory {self.root} does not exist")

    def path(self, name: str) -> Path:
        return self.root / name

    def require(self, name: str, hint: str = "") -> Path:
        """The path of an artifact that must exist, or a clear error naming it."""
        path = self.path(name)
        if not path.is_file():
            extra = f" ({hint})" if hint else ""
            raise BninceptionError(f"{path} is missing{extra}")
        return path

    # -- manifest -------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """The manifest, checked: a damaged one is a clear error that says how to recover."""
        path = self.path(MANIFEST)
        if not path.is_file():
            return {"format": MANIFEST_FORMAT, "stages": {}, "artifacts": {}}
        recover = (f"move it aside (mv {path} {path}.bad) and re-run: stages whose outputs are intact "
                   "are redone or re-recorded, nothing else is lost")
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:  # ValueError: bad JSON, or bytes that are not UTF-8
            raise BninceptionError(f"{path} is not valid JSON ({exc}); {recover}") from exc
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise BninceptionError(f"{path} is not a {MANIFEST_FORMAT} manifest; {recover}")
        data.setdefault("stages", {})
        data.setdefault("artifacts", {})
        problem = _manifest_problem(data)
        if problem:
            raise BninceptionError(f"{path} is damaged ({problem}); {recover}")
        return data

    def sha256(self, name: str) -> str:
        path = self.path(name)
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in self._hash_cache:
            self._hash_cache[key] = sha256_file(path)
        return self._hash_cache[key]

    def is_fresh(self, stage: str, params: dict[str, Any], inputs: list[str], outputs: list[str]) -> bool:
        record = self.manifest()["stages"].get(stage)
        if record is None or record.get("params") != _jsonable(params):
            return False
        if sorted(record.get("inputs", {})) != sorted(inputs):
            return False
        if sorted(record.get("outputs", {})) != sorted(outputs):
            return False
        for group in ("inputs", "outputs"):
            for name, digest in record[group].items():
                if not self.path(name).is_file() or self.sha256(name) != digest:
                    return False
        return True

    def record(
        self, stage: str, params: dict[str, Any], inputs: list[str], outputs: list[str], seconds: float
    ) -> None:
        """Record a finished stage: call only after every output has been written atomically."""
        data = self.manifest()
        input_hashes = {name: self.sha256(name) for name in inputs}
        output_hashes = {name: self.sha256(name) for name in outputs}
        data["stages"][stage] = {
            "params": _jsonable(params),
            "inputs": input_hashes,
            "outputs": output_hashes,
            "seconds": round(seconds, 3),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        for name, digest in output_hashes.items():
            data["artifacts"][name] = {
                "sha256": digest,
                "bytes": self.path(name).stat().st_size,
                "stage": stage,
                "params": _jsonable(params),
                "inputs": input_hashes,
            }
        atomic_write_json(self.path(MANIFEST), data)

    def forget(self, stage: str) -> None:
        """Drop a stage's record (its outputs stay on disk but are no longer claimed)."""
        data = self.manifest()
        record = data["stages"].pop(stage, None)
        if record is None:
            return
        for name in record.get("outputs", {}):
            data["artifacts"].pop(name, None)
        atomic_write_json(self.path(MANIFEST), data)

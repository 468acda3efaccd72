"""The run directory and its ``manifest.json``: each stage's parameters and the sha256 of its inputs and outputs."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bninception.core.errors import BninceptionError
from bninception.core.files import atomic_write_json, parse_json, sha256_file

log = logging.getLogger("bninception.run")

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


LOCK = ".lock"
_HELD: dict[tuple[str, int], int] = {}  # (run directory, thread) -> how deep this thread holds its lock


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

    @contextlib.contextmanager
    def locked(self, stage: str) -> Iterator[None]:
        """Hold the run directory's lock while a stage reads, writes and records: a second process
        (another pipeline, a stage command) waits for it, with one line saying whom it waits for."""
        key = (str(self.root.resolve()), threading.get_ident())
        if _HELD.get(key):
            _HELD[key] += 1
            try:
                yield
            finally:
                _HELD[key] -= 1
            return
        fd = os.open(self.path(LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
                log.warning("%s is in use (%s); waiting for it", self.root, holder)
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}, stage {stage}".encode(), 0)
            _HELD[key] = 1
            yield
        finally:
            _HELD.pop(key, None)
            os.close(fd)  # releases the lock

    def require(self, name: str, hint: str = "") -> Path:
        """The path of an artifact that must exist, or a clear error naming it."""
        path = self.path(name)
        if not path.is_file():
            extra = f" ({hint})" if hint else ""
            raise BninceptionError(f"{path} is missing{extra}")
        return path

    def problem(self, name: str) -> str | None:
        """Why the run's file ``name`` must not be used (None: a finished stage recorded it, and its bytes
        still have the sha256 it recorded). Summary files (layout.SUMMARIES) are not checked."""
        from bninception.core import layout

        record = self.manifest()["artifacts"].get(name)
        if record is None and name in layout.SUMMARIES:
            return None
        try:
            remake = f"`{layout.make_command(name, self.root)}`"
        except KeyError:
            remake = f"stage {record['stage']}" if record else "the stage that writes it"
        if record is None:
            return (f"{self.path(name)} was not recorded by a finished stage in {MANIFEST} (its stage was "
                    f"interrupted, or the file was put there by hand); re-run {remake}")
        if self.sha256(name) != record["sha256"]:
            return (f"{self.path(name)} changed after stage {record['stage']} wrote it (its sha256 differs from "
                    f"the one in {MANIFEST}); re-run {remake} with --force")
        return None

    def verified(self, name: str, hint: str = "") -> Path:
        """The path of a file a finished stage recorded and nobody changed since, or one clear error."""
        path = self.require(name, hint)
        problem = self.problem(name)
        if problem:
            raise BninceptionError(problem)
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
            raw = path.read_bytes()
        except OSError as exc:
            raise BninceptionError(f"cannot read {path}: {exc.strerror}; {recover}") from None
        data = parse_json(raw, path, recover)
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
        self, stage: str, params: dict[str, Any], inputs: list[str] | dict[str, str], outputs: list[str],
        seconds: float
    ) -> None:
        """Record a finished stage: call only after every output has been written atomically. ``inputs``
        as a name -> sha256 map records the hashes of what the stage read (taken before it ran)."""
        data = self.manifest()
        input_hashes = dict(inputs) if isinstance(inputs, dict) else {name: self.sha256(name) for name in inputs}
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

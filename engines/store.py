"""Where engines live: ``<run>/engines/<key>.plan`` + ``<key>.json``, and an optional shared cache.

The plan is written first and the sidecar last (both atomically), so a sidecar names a complete
plan. The cache (``$BNINCEPTION_ENGINE_CACHE``, the Docker image's ``/cache`` volume) is a flat
folder of the same pairs, shared by runs and container starts; entries are found by key.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from bninception.core.errors import BninceptionError
from bninception.core.files import atomic_path, atomic_write_bytes, atomic_write_json, sha256_file
from bninception.engines.key import PRECISION_SOURCES, Sidecar, is_engine_key

ENGINES_DIR = "engines"
CACHE_ENV = "BNINCEPTION_ENGINE_CACHE"
MAX_SIDECAR_BYTES = 1 << 20
MAX_PLAN_BYTES = 4 << 30


def plan_name(key: str) -> str:
    """The plan's name relative to the run directory (as recorded in the manifest)."""
    return f"{ENGINES_DIR}/{key}.plan"


def sidecar_name(key: str) -> str:
    return f"{ENGINES_DIR}/{key}.json"


def sidecar_path_for(plan_path: str | os.PathLike[str]) -> Path:
    return Path(plan_path).with_suffix(".json")


def read_sidecar(path: str | os.PathLike[str]) -> Sidecar:
    path = Path(path)
    if not path.is_file():
        raise BninceptionError(f"{path} is missing (every engine plan needs its JSON sidecar)")
    if path.stat().st_size > MAX_SIDECAR_BYTES:
        raise BninceptionError(f"{path} is larger than {MAX_SIDECAR_BYTES} bytes; not an engine sidecar")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BninceptionError(f"{path} is not valid JSON: {exc}") from exc
    return Sidecar.from_dict(data, where=str(path))


def read_plan(path: str | os.PathLike[str], sidecar: Sidecar | None = None) -> bytes:
    """The plan bytes, checked against the sidecar's size and sha256 when one is given."""
    path = Path(path)
    if not path.is_file():
        raise BninceptionError(f"{path} is missing")
    size = path.stat().st_size
    if size > MAX_PLAN_BYTES:
        raise BninceptionError(f"{path} is larger than {MAX_PLAN_BYTES >> 30} GiB; refusing to load it")
    if sidecar is not None and size != sidecar.plan_bytes:
        raise BninceptionError(f"{path} has {size} bytes but its sidecar records {sidecar.plan_bytes}; "
                               "the plan is truncated or was replaced")
    data = path.read_bytes()
    if sidecar is not None:
        import hashlib

        if hashlib.sha256(data).hexdigest() != sidecar.plan_sha256:
            raise BninceptionError(f"{path}: sha256 does not match its sidecar; "
                                   "the plan was replaced or corrupted")
    return data


def write_engine(directory: str | os.PathLike[str], sidecar: Sidecar, plan: bytes) -> tuple[Path, Path]:
    """Write ``<key>.plan`` then ``<key>.json`` atomically into ``directory``."""
    directory = Path(directory)
    plan_path = directory / f"{sidecar.key}.plan"
    side_path = directory / f"{sidecar.key}.json"
    atomic_write_bytes(plan_path, plan)
    atomic_write_json(side_path, sidecar.to_dict())
    return plan_path, side_path


@dataclass(frozen=True)
class EngineRecord:
    """One engine of a run: its files, its parsed sidecar, and why it is unusable (if it is)."""

    key: str
    plan_path: Path
    sidecar_path: Path
    sidecar: Sidecar | None
    problem: str | None = None

    @property
    def precision(self) -> str | None:
        return self.sidecar.spec.precision if self.sidecar else None

    def to_dict(self) -> dict[str, object]:
        return {"key": self.key, "plan": str(self.plan_path), "sidecar": str(self.sidecar_path),
                "problem": self.problem, **({"info": self.sidecar.to_dict()} if self.sidecar else {})}


def list_engines(run: object, verify: bool = False) -> list[EngineRecord]:
    """The engines of a run (a ``RunDir`` or a path), sorted by precision then key.

    Every ``<key>.plan`` or ``<key>.json`` found is reported; a missing partner, an unreadable
    sidecar or (with ``verify``) a plan whose sha256 differs from its sidecar is in ``problem``.
    """
    root = Path(getattr(run, "root", run))  # type: ignore[arg-type]
    directory = root / ENGINES_DIR
    if not directory.is_dir():
        return []
    keys = sorted({p.stem for p in directory.iterdir()
                   if p.suffix in (".plan", ".json") and is_engine_key(p.stem)})
    records = []
    for key in keys:
        plan_path, side_path = directory / f"{key}.plan", directory / f"{key}.json"
        sidecar: Sidecar | None = None
        problem: str | None = None
        try:
            sidecar = read_sidecar(side_path)
            if sidecar.key != key:
                problem = f"{side_path} describes engine {sidecar.key}, not {key}"
            elif not plan_path.is_file():
                problem = f"{plan_path} is missing"
            elif verify:
                read_plan(plan_path, sidecar)
        except BninceptionError as exc:
            problem = str(exc)
        records.append(EngineRecord(key, plan_path, side_path, sidecar, problem))
    order = {p: i for i, p in enumerate(PRECISION_SOURCES)}
    return sorted(records, key=lambda r: (order.get(r.precision or "", 99), r.key))


# -- the shared cache ------------------------------------------------------------------------------
def cache_dir(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The engine cache folder: ``explicit``, else ``$BNINCEPTION_ENGINE_CACHE``, else None."""
    value = explicit if explicit is not None else os.environ.get(CACHE_ENV) or None
    return Path(value) if value else None


def _copy_atomic(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def fetch_from_cache(cache: Path, key: str, directory: Path) -> Sidecar | None:
    """Copy a verified ``key`` pair from the cache into ``directory``; None if absent or bad."""
    side_src, plan_src = cache / f"{key}.json", cache / f"{key}.plan"
    if not (side_src.is_file() and plan_src.is_file()):
        return None
    try:
        sidecar = read_sidecar(side_src)
        if sidecar.key != key or sha256_file(plan_src) != sidecar.plan_sha256:
            return None
    except BninceptionError:
        return None
    _copy_atomic(plan_src, directory / f"{key}.plan")
    _copy_atomic(side_src, directory / f"{key}.json")  # sidecar last
    return sidecar


def store_in_cache(cache: Path, key: str, directory: Path) -> None:
    """Copy a run's ``key`` pair into the cache (plan first, sidecar last)."""
    cache.mkdir(parents=True, exist_ok=True)
    _copy_atomic(directory / f"{key}.plan", cache / f"{key}.plan")
    _copy_atomic(directory / f"{key}.json", cache / f"{key}.json")

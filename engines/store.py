"""Where engines live, the one sidecar reader, and which of a run's engines may run here.

A plan is written before its sidecar, so a sidecar names a complete plan. The cache
(``$BNINCEPTION_ENGINE_CACHE``) is a flat folder of plan + sidecar pairs found by key.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from bninception.core.errors import BninceptionError
from bninception.core.files import atomic_path, atomic_write_bytes, atomic_write_json, read_json, sha256_file
from bninception.core.layout import ENGINES_DIR, PRECISION_FILES, context_model_name, plan_name
from bninception.core.rundir import RunDir
from bninception.engines.detect import HostEnv
from bninception.engines.key import Sidecar, compatibility_problem, is_engine_key, stage_name

CACHE_ENV = "BNINCEPTION_ENGINE_CACHE"
MAX_SIDECAR_BYTES = 1 << 20
MAX_PLAN_BYTES = 4 << 30
USABLE, STALE, FOREIGN, BROKEN = "usable", "stale", "foreign", "broken"


def sidecar_path_for(plan_path: str | os.PathLike[str]) -> Path:
    return Path(plan_path).with_suffix(".json")


def read_sidecar(path: str | os.PathLike[str]) -> Sidecar:
    path = Path(path)
    if not path.is_file():
        raise BninceptionError(f"{path} is missing (every engine plan needs its JSON sidecar)")
    return Sidecar.from_dict(read_json(path, MAX_SIDECAR_BYTES, "an engine sidecar"), where=str(path))


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


def _root(run: object) -> Path:
    """The folder of a ``RunDir`` or of a path (``Path.root`` is "/", so never ``getattr(run, "root")``)."""
    if isinstance(run, (str, os.PathLike)):
        return Path(run)
    return Path(run.root)  # type: ignore[attr-defined]


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

    @property
    def context_path(self) -> Path:
        """The EPContext model beside the plan (it may not exist: engines built before it did)."""
        return self.plan_path.with_name(Path(context_model_name(self.key)).name)

    def to_dict(self) -> dict[str, object]:
        return {"key": self.key, "plan": str(self.plan_path), "sidecar": str(self.sidecar_path),
                "context_model": str(self.context_path) if self.context_path.is_file() else None,
                "problem": self.problem, **({"info": self.sidecar.to_dict()} if self.sidecar else {})}


def list_engines(run: object, verify: bool = False) -> list[EngineRecord]:
    """The engines of a run, sorted by precision then key; a missing partner or bad sidecar is in ``problem``."""
    root = _root(run)
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
    order = {p: i for i, p in enumerate(PRECISION_FILES)}
    return sorted(records, key=lambda r: (order.get(r.precision or "", 99), r.key))


# -- which engines may run here --------------------------------------------------------------------
@dataclass(frozen=True)
class EngineStatus:
    """One engine of a run and whether it may run on this host: ``state`` is usable, stale, foreign or broken."""

    record: EngineRecord
    state: str
    reason: str = ""  # empty for usable engines

    @property
    def key(self) -> str:
        return self.record.key

    @property
    def precision(self) -> str | None:
        return self.record.precision

    @property
    def usable(self) -> bool:
        return self.state == USABLE

    def to_dict(self) -> dict[str, object]:
        return {**self.record.to_dict(), "state": self.state, "reason": self.reason}


def classify_engines(run: object, here: HostEnv | None, host_reason: str = "", verify: bool = True,
                     precision: str | None = None) -> list[EngineStatus]:
    """Each engine of ``run`` as usable, stale (source ONNX changed or gone), foreign (other TensorRT or GPU,
    or none here: ``here`` None) or broken (bad sidecar; with ``verify``, a plan that differs from it).
    """
    root = _root(run)
    current: dict[str, str | None] = {}
    out = []
    for record in list_engines(root, verify=verify):
        if precision is not None and record.precision != precision:
            continue
        if record.problem is not None or record.sidecar is None:
            out.append(EngineStatus(record, BROKEN, record.problem or "no readable sidecar"))
            continue
        spec = record.sidecar.spec
        source = PRECISION_FILES[spec.precision]
        if source not in current:
            current[source] = sha256_file(root / source) if (root / source).is_file() else None
        if current[source] is None:
            out.append(EngineStatus(record, STALE, f"its source {source} is gone"))
        elif current[source] != spec.onnx_sha256:
            out.append(EngineStatus(record, STALE, f"built from an older {source}"))
        elif here is None:
            out.append(EngineStatus(record, FOREIGN, f"not runnable here: {host_reason or 'no TensorRT/GPU'}"))
        elif (problem := compatibility_problem(spec.env, spec.options.hardware_compatibility, here)) is not None:
            out.append(EngineStatus(record, FOREIGN, problem))
        else:
            out.append(EngineStatus(record, USABLE))
    return out


def _recorded_outputs(root: Path, precision: str) -> set[str]:
    """The files the manifest records for ``precision``'s build stage (none where it cannot say)."""
    try:
        stages = RunDir(root, create=False).manifest()["stages"]
    except BninceptionError:
        return set()
    return set(stages.get(stage_name(precision), {}).get("outputs", {}))


def select_engine(run: object, precision: str, here: HostEnv | None = None) -> EngineRecord:
    """The usable ``precision`` engine (the manifest's first), or a clear error; ``here`` None skips the host check."""
    if precision not in PRECISION_FILES:
        raise BninceptionError(f"precision must be one of {sorted(PRECISION_FILES)}, got {precision!r}")
    root = _root(run)
    statuses = classify_engines(root, here, precision=precision)
    if here is None:  # host not checked: current, intact engines qualify
        statuses = [EngineStatus(s.record, USABLE) if s.state == FOREIGN else s for s in statuses]
    usable = [s for s in statuses if s.usable]
    if not usable:
        reasons = [f"{s.key}: {s.reason}" for s in statuses]
        detail = f" ({'; '.join(reasons)})" if reasons else ""
        raise BninceptionError(f"{root}: no usable {precision} TensorRT engine{detail}; run "
                               f"`bninception build-engine --run {root} --precision {precision}`")
    recorded = _recorded_outputs(root, precision)
    usable.sort(key=lambda s: (plan_name(s.key) not in recorded, s.key))
    return usable[0].record


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

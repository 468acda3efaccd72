"""Atomic file writes and content hashes: a killed stage never leaves a half-written artifact."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target`` that replaces it atomically on success; removed on error."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; artifacts get the usual permissions
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``target`` atomically (a killed writer leaves the previous file); OSError on failure."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``target`` atomically (TypeError for what JSON cannot hold)."""
    atomic_write_text(target, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_write_with(target: str | os.PathLike[str], writer: Callable[[BinaryIO], None]) -> None:
    """Write ``target`` atomically through ``writer(file_object)``."""
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        writer(handle)


def parse_json(data: str | bytes, where: object, recover: str = "") -> Any:
    """``json.loads`` with one clear error naming ``where`` for anything an editor or a crash can leave:
    broken or truncated JSON, bytes that are not UTF-8, nesting too deep for the parser."""
    from bninception.core.errors import BninceptionError

    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # ValueError: bad JSON, or bytes that are not UTF-8
        problem = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise BninceptionError(f"{where} is not valid JSON ({problem})" + (f"; {recover}" if recover else "")) \
            from None


def read_json(path: str | os.PathLike[str], max_bytes: int, what: str, recover: str = "") -> Any:
    """A small JSON file (``what`` says what it should be), size-bounded, with errors naming the file."""
    from bninception.core.errors import BninceptionError

    path = Path(path)
    if path.stat().st_size > max_bytes:
        raise BninceptionError(f"{path} is larger than {max_bytes} bytes; not {what}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BninceptionError(f"cannot read {path}: {exc.strerror}") from None
    return parse_json(data, path, recover)


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """The hex sha256 of the file at ``path``, read in ``chunk``-byte blocks; OSError when it cannot be read."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """The hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()

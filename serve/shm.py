"""Triton's system shared-memory extension: registered POSIX regions read for inputs, written for outputs.

Keys are plain names, regions are bounded in number, and every access is checked against the
registered and the current size. Regions are read and written through ``os.pread`` / ``os.pwrite`` on the
open file, never mapped: a client that truncates its region under a request gets a short read (a 400),
where a mapping would kill the server with SIGBUS.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from typing import Any

from bninception.serve.protocol import ProtocolError

SHM_DIR = "/dev/shm"
KEY = re.compile(r"^/?[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
MAX_REGIONS = 64


@dataclass
class Region:
    name: str
    key: str
    offset: int
    byte_size: int
    fd: int

    def status(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key, "offset": self.offset, "byte_size": self.byte_size}


def _shrank(region: Region) -> ProtocolError:
    return ProtocolError(400, f"shared memory {region.key!r} of region {region.name!r} shrank or vanished")


class SharedMemory:
    """The registered regions of one server (thread-safe)."""

    def __init__(self, max_regions: int = MAX_REGIONS) -> None:
        self.max_regions = max_regions
        self._regions: dict[str, Region] = {}
        self._lock = threading.Lock()

    def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        if not name or len(name) > 256:
            raise ProtocolError(400, "a shared-memory region needs a name of 1..256 characters")
        if not KEY.match(key or "") or ".." in key:
            raise ProtocolError(400, f"shared-memory key {key[:64]!r} is not a plain name like '/input0'")
        if offset < 0 or byte_size <= 0:
            raise ProtocolError(400, "shared-memory offset must be >= 0 and byte_size > 0")
        with self._lock:
            if name in self._regions:
                raise ProtocolError(400, f"shared-memory region {name!r} is already registered")
            if len(self._regions) >= self.max_regions:
                raise ProtocolError(400, f"{self.max_regions} shared-memory regions are registered already")
            path = os.path.join(SHM_DIR, key.lstrip("/"))
            try:
                fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
            except OSError as exc:
                raise ProtocolError(400, f"cannot open shared memory {key!r}: {exc.strerror}") from None
            try:
                size = os.fstat(fd).st_size
                if offset + byte_size > size:
                    raise ProtocolError(400, f"shared memory {key!r} has {size} bytes, fewer than offset "
                                             f"{offset} + byte_size {byte_size}")
            except BaseException:
                os.close(fd)
                raise
            self._regions[name] = Region(name, key, offset, byte_size, fd)

    def unregister(self, name: str | None = None) -> None:
        """Unregister ``name`` (Triton: an unknown name is not an error), or every region."""
        with self._lock:
            names = list(self._regions) if not name else [name]
            for each in names:
                region = self._regions.pop(each, None)
                if region is not None:
                    os.close(region.fd)

    def status(self, name: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            if name and name not in self._regions:
                raise ProtocolError(404, f"unknown shared-memory region {name!r}")
            return [r.status() for r in self._regions.values() if not name or r.name == name]

    def _span(self, name: str, offset: int, size: int) -> tuple[Region, int]:
        region = self._regions.get(name)
        if region is None:
            raise ProtocolError(400, f"unknown shared-memory region {name!r}: register it first")
        if offset < 0 or size < 0 or offset + size > region.byte_size:
            raise ProtocolError(400, f"shared-memory region {name!r}: offset {offset} + {size} bytes is outside "
                                     f"its {region.byte_size} bytes")
        start = region.offset + offset
        if os.fstat(region.fd).st_size < start + size:
            raise _shrank(region)
        return region, start

    def read(self, name: str, offset: int, size: int) -> bytes:
        with self._lock:
            region, start = self._span(name, offset, size)
            data = os.pread(region.fd, size, start)
        if len(data) != size:  # truncated between the size check and the read
            raise _shrank(region)
        return data

    def write(self, name: str, offset: int, data: bytes) -> None:
        with self._lock:
            region, start = self._span(name, offset, len(data))
            written = os.pwrite(region.fd, data, start)
        if written != len(data):
            raise _shrank(region)

    def close(self) -> None:
        self.unregister()

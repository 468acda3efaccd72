#!/usr/bin/env python3
"""Docker HEALTHCHECK: exit 0 when this container's `bninception serve` answers /v2/health/ready.

The server's address comes from PID 1's command line, which is `bninception serve ... --host H
--port P` (the entrypoint execs the CLI; with `docker run --init` it is the init's command line,
which holds the same words). 0.0.0.0 and :: are checked on the loopback. A container that runs no
server (pipeline, validate, ...) has nothing to check and is healthy. Standard library only.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path

PROGRAMS = ("bninception", "bninception-entrypoint")
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000


def serve_address(argv: list[str]) -> tuple[str, int] | None:
    """(host, port) that `serve` listens on, or None when the command line runs another command."""
    start = next((i for i, word in enumerate(argv) if Path(word).name in PROGRAMS), None)
    if start is None:
        return None
    rest = argv[start + 1:]
    at = next((i for i, word in enumerate(rest) if not word.startswith("-")), None)
    if at is None or rest[at] != "serve":
        return None
    host, port = DEFAULT_HOST, str(DEFAULT_PORT)
    previous = ""
    for word in rest[at + 1:]:
        if previous == "--host":
            host = word
        elif previous == "--port":
            port = word
        elif word.startswith("--host="):
            host = word.split("=", 1)[1]
        elif word.startswith("--port="):
            port = word.split("=", 1)[1]
        previous = word
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return host, int(port)


def ready_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/v2/health/ready" if ":" in host else f"http://{host}:{port}/v2/health/ready"


def check(argv: list[str], timeout: float = 4.0) -> tuple[int, str]:
    address = serve_address(argv)
    if address is None:
        return 0, "no server in this container: nothing to check"
    url = ready_url(*address)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return (0, f"{url}: ready") if response.status == 200 else (1, f"{url}: HTTP {response.status}")
    except urllib.error.HTTPError as exc:
        return 1, f"{url}: HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return 1, f"{url}: {exc}"


def pid1_argv() -> list[str]:
    raw = Path("/proc/1/cmdline").read_bytes()
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def main() -> int:
    status, message = check(pid1_argv())
    print(message)
    return status


if __name__ == "__main__":
    sys.exit(main())

"""A route table: method and path template to a handler, with 404 and 405 (``Allow``) for the rest."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bninception.serve.protocol import ProtocolError

Handler = Callable[[Any], Any]  # an async handler: Request -> Answer
_PARAMETER = re.compile(r"\{(\w+)(:path)?\}")


@dataclass(frozen=True)
class Route:
    methods: tuple[str, ...]
    template: str  # "/v2/models/{name}"; "{rest:path}" also matches slashes
    endpoint: str  # the metrics label
    handler: Handler


@dataclass(frozen=True)
class Resolved:
    endpoint: str
    handler: Handler
    params: dict[str, str]


def _pattern(template: str) -> re.Pattern[str]:
    def group(match: re.Match[str]) -> str:
        return f"(?P<{match[1]}>{'.+' if match[2] else '[^/]+'})"

    return re.compile(_PARAMETER.sub(group, re.escape(template).replace(r"\{", "{").replace(r"\}", "}")))


class Router:
    """Resolves a request to the first route whose template matches its path and method."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = [(route, _pattern(route.template)) for route in routes]

    def resolve(self, method: str, path: str) -> Resolved:
        allowed: list[str] = []
        endpoint = "other"
        for route, pattern in self.routes:
            found = pattern.fullmatch(path)
            if found is None:
                continue
            if method in route.methods:
                return Resolved(route.endpoint, route.handler, found.groupdict())
            allowed += [m for m in route.methods if m not in allowed]
            endpoint = route.endpoint
        if allowed:
            refusal = ProtocolError(405, f"{method} is not allowed here; use {', '.join(allowed)}",
                                    {"Allow": ", ".join(allowed)})
        else:
            refusal = ProtocolError(404, "Not Found")
        return Resolved(endpoint, _refuse(refusal), {})


def _refuse(exc: ProtocolError) -> Handler:
    async def handler(_: Any) -> Any:
        raise exc

    return handler

"""One TensorRT logger per process, with error collection scoped to one build or load.

TensorRT treats its logger as a process-wide singleton (docs/decisions.md, "TensorRT logger"), so
every Builder, Runtime and OnnxParser gets :func:`process_logger`; collectors are process-wide.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Iterator
from types import ModuleType
from typing import Any

log = logging.getLogger("bninception.tensorrt")

_lock = threading.Lock()
_loggers: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()  # module -> logger (tests use fakes)
_sinks: list[list[str]] = []  # the open collect_errors() lists


def process_logger(trt: ModuleType | Any) -> Any:
    """The process's ``trt.ILogger``: forwards to :mod:`logging`, feeds :func:`collect_errors`."""
    with _lock:
        existing = _loggers.get(trt)
        if existing is not None:
            return existing

        class ProcessLogger(trt.ILogger):  # type: ignore[name-defined]
            """Routes TensorRT messages to logging; errors also go to the thread's collectors."""

            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, severity: Any, msg: str) -> None:
                if severity in (trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR):
                    with _lock:
                        for sink in _sinks:
                            sink.append(msg)
                    log.error("%s", msg)
                elif severity == trt.ILogger.WARNING:
                    log.warning("%s", msg)
                else:
                    log.debug("%s", msg)

        logger = ProcessLogger()
        _loggers[trt] = logger
        return logger


@contextlib.contextmanager
def collect_errors() -> Iterator[list[str]]:
    """Yield a list that receives every TensorRT error logged while the block runs."""
    errors: list[str] = []
    with _lock:
        _sinks.append(errors)
    try:
        yield errors
    finally:
        with _lock:  # by identity: two collectors with equal contents are still two
            _sinks[:] = [sink for sink in _sinks if sink is not errors]


def describe(errors: list[str], fallback: str = "see the TensorRT log above", last: int = 5) -> str:
    """The last few collected errors, one per clause, for an exception message."""
    return "; ".join(errors[-last:]) or fallback

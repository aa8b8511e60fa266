"""A fake AWS Bedrock Runtime on 127.0.0.1 that botocore parses exactly as it parses AWS.

Contract:
- `POST /model/{modelId}/converse` answers JSON: the next scripted tool input as a `toolUse`
  block (named after the request's forced `toolChoice`), or scripted text when no tool is
  forced; with `stopReason` and `usage`.
- `POST /model/{modelId}/converse-stream` answers `application/vnd.amazon.eventstream` with
  real binary frames (prelude, CRC32s, string headers, JSON payload), sent chunked, one frame
  per HTTP chunk: messageStart, contentBlockDelta × N, contentBlockStop, messageStop, metadata.
  `TextScript.delay` paces the frames (`stall_after`/`stall` add one long pause); while pacing, the server watches the socket and
  records the moment the client hangs up (`StreamRecord.aborted_at`).
- `fail_next(kind, times)` makes the next requests fail as AWS does: `throttle` (429
  ThrottlingException), `access_denied` (403), `validation` (400), `model_error` (424),
  `unavailable` (503), each with `x-amzn-ErrorType` and a JSON `message`.
- Every request is recorded (`requests`) with its path, model id and JSON body.

`FakeBedrock.start()` binds a random port; `reset()` clears scripts and records between tests.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

STREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"
HOST = "127.0.0.1"

ERRORS: dict[str, tuple[int, str, str]] = {
    "throttle": (429, "ThrottlingException", "Too many requests, please wait before trying again."),
    "access_denied": (403, "AccessDeniedException", "You don't have access to the model with the specified model ID."),
    "validation": (400, "ValidationException", "The provided model identifier is invalid."),
    "model_error": (424, "ModelErrorException", "The model failed to process the request."),
    "unavailable": (503, "ServiceUnavailableException", "The service is unavailable. Try again later."),
}


# -- event-stream encoding -------------------------------------------------------------------


def _header(name: str, value: str) -> bytes:
    name_bytes, value_bytes = name.encode(), value.encode()
    return struct.pack("!B", len(name_bytes)) + name_bytes + b"\x07" + struct.pack("!H", len(value_bytes)) + value_bytes


def encode_frame(headers: dict[str, str], payload: dict[str, Any]) -> bytes:
    """One event-stream message: prelude + CRC, string headers, JSON payload, message CRC."""
    header_bytes = b"".join(_header(name, value) for name, value in headers.items())
    body = json.dumps(payload).encode()
    total = 12 + len(header_bytes) + len(body) + 4
    prelude = struct.pack("!II", total, len(header_bytes))
    prelude += struct.pack("!I", zlib.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + header_bytes + body
    return message + struct.pack("!I", zlib.crc32(message) & 0xFFFFFFFF)


def event_frame(event_type: str, payload: dict[str, Any]) -> bytes:
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode_frame(headers, payload)


def exception_frame(exception_type: str, message: str) -> bytes:
    headers = {":exception-type": exception_type, ":content-type": "application/json", ":message-type": "exception"}
    return encode_frame(headers, {"message": message})


# -- scripts and records ---------------------------------------------------------------------


@dataclass
class TextScript:
    """What a converse-stream (or a tool-less converse) answers."""

    chunks: list[str] = field(default_factory=lambda: ["Hello", ", ", "this ", "is ", "a ", "fake ", "reply."])
    delay: float = 0.0  # seconds before each frame
    stop_reason: str = "end_turn"
    error_after: int | None = None  # send an exception frame after this many deltas
    error_type: str = "modelStreamErrorException"
    stall_after: int | None = None  # after this many deltas, wait `stall` seconds (a slow model)
    stall: float = 0.0
    stamp: bool = False  # prefix each delta with `time.monotonic_ns()` at send time (benchmarks)

    def pause_before(self, frame_index: int) -> float:
        """Seconds to wait before frame `frame_index` (0 is messageStart, 1.. are deltas)."""
        stalled = self.stall_after is not None and frame_index == self.stall_after + 1
        return self.delay + (self.stall if stalled else 0.0)

    def usage(self) -> dict[str, int]:
        output_tokens = len(self.chunks)
        return {"inputTokens": 11, "outputTokens": output_tokens, "totalTokens": 11 + output_tokens}


@dataclass
class RecordedRequest:
    path: str
    model_id: str
    operation: str  # "converse" | "converse-stream"
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class StreamRecord:
    """One converse-stream response as the server saw it."""

    started_at: float
    frames_sent: int = 0
    completed: bool = False
    completed_at: float | None = None  # time.monotonic() when its last frame was sent
    aborted_at: float | None = None  # time.monotonic() when the client hung up

    @property
    def aborted(self) -> bool:
        return self.aborted_at is not None


class FakeBedrock:
    """The server and its per-test script. Thread-safe; handlers read the script under a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    # lifecycle

    def start(self) -> FakeBedrock:
        server = _Server(self)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="fake-bedrock", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None, "FakeBedrock is not started"
        return f"http://{HOST}:{self._server.server_port}"

    def reset(self) -> None:
        with self._lock:
            self.text = TextScript()
            self.tool_inputs: deque[Any] = deque()
            self.failures: deque[str] = deque()
            self.requests: list[RecordedRequest] = []
            self.streams: list[StreamRecord] = []

    # script

    def script_text(self, chunks: list[str], delay: float = 0.0, **kwargs: Any) -> None:
        self.use_script(TextScript(chunks=list(chunks), delay=delay, **kwargs))

    def use_script(self, script: TextScript) -> None:
        """What the next converse-stream (or tool-less converse) answers."""
        with self._lock:
            self.text = script

    def queue_tool_inputs(self, *inputs: Any) -> None:
        """Each converse call with a forced tool answers with the next input, in order."""
        with self._lock:
            self.tool_inputs.extend(inputs)

    def fail_next(self, kind: str, times: int = 1) -> None:
        if kind not in ERRORS:
            raise ValueError(f"unknown failure {kind!r}; known: {sorted(ERRORS)}")
        with self._lock:
            self.failures.extend([kind] * times)

    # used by the handler

    def record(self, request: RecordedRequest) -> str | None:
        """Keep the request; return the failure to answer with, if one is scheduled."""
        with self._lock:
            self.requests.append(request)
            return self.failures.popleft() if self.failures else None

    def next_tool_input(self) -> Any:
        with self._lock:
            return self.tool_inputs.popleft() if self.tool_inputs else {}

    def new_stream(self) -> StreamRecord:
        with self._lock:
            stream = StreamRecord(started_at=time.monotonic())
            self.streams.append(stream)
            return stream

    def wait_for_stream(self, timeout: float = 2.0, index: int = 0) -> StreamRecord:
        """The `index`-th converse-stream response, once the request has arrived."""
        deadline = time.monotonic() + timeout
        while len(self.streams) <= index:
            if time.monotonic() > deadline:
                raise AssertionError(f"no converse-stream request #{index} within {timeout} s")
            time.sleep(0.005)
        return self.streams[index]

    def most_streams_at_once(self) -> int:
        """The most converse-stream responses that were open at the same moment."""
        with self._lock:
            edges = [(s.started_at, 1) for s in self.streams]
            edges += [(end, -1) for s in self.streams if (end := s.completed_at or s.aborted_at) is not None]
        most = now = 0
        for _, step in sorted(edges):  # at equal times an end (-1) sorts before a start (+1)
            now += step
            most = max(most, now)
        return most

    def wait_for_abort(self, stream: StreamRecord, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if stream.aborted:
                return True
            time.sleep(0.005)
        return stream.aborted


class _Server(ThreadingHTTPServer):
    """Binds a free port of `HOST`; its handlers answer from `fake`."""

    daemon_threads = True
    request_queue_size = 1024  # many concurrent streams connect at once

    def __init__(self, fake: FakeBedrock) -> None:
        super().__init__((HOST, 0), _Handler)
        self.fake = fake


class _ClientGone(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeBedrock/1.0"
    disable_nagle_algorithm = True  # frames leave at once, as from AWS

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    @property
    def fake(self) -> FakeBedrock:
        assert isinstance(self.server, _Server)
        return self.server.fake

    def do_POST(self) -> None:
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) != 3 or parts[0] != "model" or parts[2] not in ("converse", "converse-stream"):
            self._send_json(404, {"message": f"no route {self.path}"}, "ResourceNotFoundException")
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        recorded = RecordedRequest(self.path, unquote(parts[1]), parts[2], body, dict(self.headers.items()))
        failure = self.fake.record(recorded)
        if failure is not None:
            status, code, message = ERRORS[failure]
            self._send_json(status, {"message": message}, code)
        elif recorded.operation == "converse":
            self._send_json(200, self._converse_reply(body))
        else:
            self._stream_reply()

    # converse

    def _converse_reply(self, body: dict[str, Any]) -> dict[str, Any]:
        tool = ((body.get("toolConfig") or {}).get("toolChoice") or {}).get("tool")
        usage = {"inputTokens": 20, "outputTokens": 10, "totalTokens": 30}
        if tool is None:
            text = "".join(self.fake.text.chunks)
            message = {"role": "assistant", "content": [{"text": text}]}
            return {
                "output": {"message": message},
                "stopReason": "end_turn",
                "usage": usage,
                "metrics": {"latencyMs": 1},
            }
        tool_use = {
            "toolUseId": f"tooluse_{len(self.fake.requests)}",
            "name": tool["name"],
            "input": self.fake.next_tool_input(),
        }
        message = {"role": "assistant", "content": [{"toolUse": tool_use}]}
        return {"output": {"message": message}, "stopReason": "tool_use", "usage": usage, "metrics": {"latencyMs": 1}}

    def _send_json(self, status: int, payload: dict[str, Any], error_type: str | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", "fake-request-id")
        if error_type:
            self.send_header("x-amzn-ErrorType", error_type)
        self.end_headers()
        self.wfile.write(data)

    # converse-stream

    def _stream_reply(self) -> None:
        script = self.fake.text
        record = self.fake.new_stream()
        self.send_response(200)
        self.send_header("Content-Type", STREAM_CONTENT_TYPE)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-amzn-RequestId", "fake-request-id")
        self.end_headers()
        self.wfile.flush()
        try:
            for frame in _stream_frames(script, lambda index: self._pace(script.pause_before(index))):
                self._write_chunk(frame)
                record.frames_sent += 1
            self._write_chunk(b"")
            record.completed_at = time.monotonic()
            record.completed = True
        except (_ClientGone, BrokenPipeError, ConnectionResetError):
            record.aborted_at = time.monotonic()
            self.close_connection = True

    def _pace(self, delay: float) -> None:
        """Wait `delay` seconds, noticing at once when the client closes the connection."""
        deadline = time.monotonic() + delay
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            readable, _, _ = select.select([self.connection], [], [], remaining)
            if readable and _peer_closed(self.connection):
                raise _ClientGone

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def _peer_closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except BlockingIOError:
        return False


def _stream_frames(script: TextScript, pace: Callable[[int], None]) -> Iterator[bytes]:
    """The frames of one reply; `pace(i)` runs before frame i is built, so stamps are fresh."""
    pace(0)
    yield event_frame("messageStart", {"role": "assistant"})
    for index, text in enumerate(script.chunks):
        pace(index + 1)
        if script.error_after is not None and index == script.error_after:
            yield exception_frame(script.error_type, "The model stream failed.")
            return
        if script.stamp:
            text = f"{time.monotonic_ns()}:{text}"
        yield event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": text}})
    for offset, (event_type, payload) in enumerate(_closing_events(script), start=len(script.chunks) + 1):
        pace(offset)
        yield event_frame(event_type, payload)


def _closing_events(script: TextScript) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("contentBlockStop", {"contentBlockIndex": 0}),
        ("messageStop", {"stopReason": script.stop_reason}),
        ("metadata", {"usage": script.usage(), "metrics": {"latencyMs": 5}}),
    ]

"""An open ConverseStream, shared by the thread that reads it and the loop that may hang it up.

Contract: the reading thread `attach`es the stream once it is open and `release`s (closes) it
when done; the loop may `cancel` at any time — when the awaiting coroutine is cancelled — and
the HTTP stream is hung up at once: the reading side of its socket is
shut down from the loop's side, which also wakes a reading thread blocked on a silent socket
(a model thinking), and the connection is closed rather than returned to the pool. A stream
already read to its end (its connection back in the pool) is left alone. A cancel that comes
before `attach` closes the stream as soon as it opens. `fail_with` ends a stream's outcome with
the error of a worker job that failed outright (the service closed), so nobody waits for an end
that will never come.
"""

from __future__ import annotations

import asyncio
import threading

from engine.llm import StreamEnd
from services.bedrock.replies import EventStream


class StreamHandle:
    """Shared by the reading thread and the loop: lets the loop hang up an open stream."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stream: EventStream | None = None
        self.cancelled = False

    def attach(self, stream: EventStream) -> bool:
        """Called by the thread once the stream is open; False when already cancelled."""
        with self._lock:
            if not self.cancelled:
                self._stream = stream
                return True
        stream.close()
        return False

    def cancel(self) -> None:
        """Called by the loop: stop reading and hang up the connection now."""
        with self._lock:
            self.cancelled = True
            stream = self._stream
        if stream is not None:
            hang_up(stream)

    def release(self) -> None:
        """Called by the thread when it is done with the stream."""
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()


def hang_up(stream: EventStream) -> None:
    """Shut the reading side of the stream's socket: the blocked reader wakes up at once and
    closes the connection. A stream already read to its end (connection back in the pool) is
    left alone."""
    raw: object = getattr(stream, "_raw_stream", None)
    shutdown = getattr(raw, "shutdown", None)
    try:
        if callable(shutdown):
            shutdown()  # urllib3 >= 2.3
        else:
            stream.close()
    except (ValueError, RuntimeError, OSError):
        pass


def fail_with(result: asyncio.Future[StreamEnd], done: asyncio.Future[None]) -> None:
    """A stream's worker job that failed outright (service closed): its outcome fails with the job's error."""
    if not done.cancelled() and (error := done.exception()) is not None and not result.done():
        result.set_exception(error)

"""A real `websockets` Backend 2 on 127.0.0.1 for tests, in its own thread and event loop.

It records every message per path (`messages`; `unique` is what a Backend 2 deduplicating by
`seq` keeps), counts connections, can be stopped as by a crash (connections aborted without a
closing handshake, messages read but not yet processed are lost) and restarted on the same
port, and can read slowly (`read_delay` seconds per message). Usable from sync code and from
another event loop: it runs in its own thread and loop.

Every message it records is checked against the service's published events schema
(`web.json_schemas.events_schema`, built-in element types): `schema_violations` lists those
that do not match (`<path> seq <n>: <reason>`); `take_schema_violations()` returns them and
starts afresh; `skip_unchecked()` counts what was recorded so far as checked without checking
it. A message is checked when the violations are read, not on arrival, so checking never
delays reading or changes the arrival times tests measure; each message is checked once.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tests.schema_checks import event_problems

type Message = dict[str, Any]  # a decoded event, as Backend 2 received it


class FakeBackend2:
    def __init__(
        self,
        port: int = 0,
        read_delay: float = 0.0,
        on_message: Callable[[Message], None] | None = None,
        max_size: int | None = 2**20,
    ):
        self.port = port
        self.max_size = max_size  # websockets' own limit of a message; over it the connection closes with 1009
        self.on_message = on_message  # called (in the server's thread) with each decoded message
        self.read_delay = read_delay
        self.raw: dict[str, list[Message]] = defaultdict(list)
        self._checked: dict[str, int] = defaultdict(int)  # per path: how many of `raw` were checked
        self._violations: list[str] = []
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="fake-backend2")
        self._thread.start()
        self._server: Server | None = None
        self._live: set[ServerConnection] = set()
        self._lock = threading.Lock()

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def start(self) -> FakeBackend2:
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        server = await serve(self._handle, "127.0.0.1", self.port, reuse_address=True, max_size=self.max_size)
        self._server = server
        self.port = int(server.sockets[0].getsockname()[1])

    def stop(self) -> None:
        """Kill the server and every open connection, as a crash would."""
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)

    async def _stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close(close_connections=False)
            for connection in list(self._live):
                connection.transport.abort()  # no closing handshake: a crash, not a goodbye
            await asyncio.wait_for(server.wait_closed(), 5)

    def shutdown(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    async def _handle(self, connection: ServerConnection) -> None:
        assert connection.request is not None  # websockets calls the handler after the handshake
        path = connection.request.path
        with self._lock:
            self.connections += 1
        self._live.add(connection)
        try:
            async for message in connection:
                if self.read_delay:
                    await asyncio.sleep(self.read_delay)
                if self._server is None:  # stopped: what is still buffered is lost, as in a crash
                    return
                self._record(path, json.loads(message))
        except ConnectionClosed:  # the streamer went away without a goodbye: nothing to do
            pass
        finally:
            self._live.discard(connection)

    def _record(self, path: str, decoded: Message) -> None:
        if self.on_message is not None:
            self.on_message(decoded)
        with self._lock:
            self.raw[path].append(decoded)

    @property
    def schema_violations(self) -> list[str]:
        """Every recorded message that does not match the events schema (checked now if new)."""
        with self._lock:
            fresh = [(path, messages[self._checked[path] :]) for path, messages in self.raw.items()]
            for path, messages in self.raw.items():
                self._checked[path] = len(messages)
        for path, messages in fresh:
            for message in messages:
                seq = message.get("seq") if isinstance(message, dict) else None
                self._violations += [f"{path} seq {seq}: {problem}" for problem in event_problems(message)]
        return list(self._violations)

    def skip_unchecked(self) -> None:
        """Count every message recorded so far as checked, unchecked (they are earlier tests')."""
        with self._lock:
            for path, messages in self.raw.items():
                self._checked[path] = len(messages)
        self._violations.clear()

    def take_schema_violations(self) -> list[str]:
        """`schema_violations`, then forget them (messages already checked stay checked)."""
        found = self.schema_violations
        self._violations.clear()
        return found

    def messages(self, path: str) -> list[Message]:
        with self._lock:
            return list(self.raw.get("/" + path.lstrip("/"), []))

    def unique(self, path: str) -> list[Message]:
        """What a Backend 2 deduplicating by seq keeps, in arrival order."""
        seen: set[int] = set()
        kept = []
        for message in self.messages(path):
            if message["seq"] not in seen:
                seen.add(message["seq"])
                kept.append(message)
        return kept

    def wait_for(self, path: str, predicate: Callable[[list[Message]], bool], timeout: float = 10.0) -> list[Message]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.unique(path)
            if predicate(found):
                return found
            time.sleep(0.01)
        raise AssertionError(f"timed out waiting on {path}; got {len(self.unique(path))} events")

    def wait_for_completion(self, path: str, timeout: float = 20.0) -> list[Message]:
        return self.wait_for(path, lambda events: any(e["type"] == "flow_completed" for e in events), timeout)

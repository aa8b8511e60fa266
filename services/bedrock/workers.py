"""The Bedrock service's own thread pool, which the event loop hands work to without waiting.

Contract: boto3 blocks, so every Bedrock call runs in a dedicated pool of `max_workers`
threads (`bedrock_*`), never on the loop. `Workers.run(fn, *args)` returns at once with a
future of the calling loop: the loop only puts the job on a queue; a dispatcher thread
(`bedrock-dispatch`) submits it to the pool, and the outcome comes back with
`call_soon_threadsafe`. Why: `ThreadPoolExecutor.submit` starts a new thread when none is idle,
and a thread start waits for the new thread to get the GIL — with hundreds of busy boto3
threads, 1,000 submits from the loop blocked it for ~5 s.
After `shutdown()` work already queued still runs (and fails fast on the closed client); later
jobs fail with `ElementError` `service_closed` instead of hanging. An outcome whose loop has
closed meanwhile is dropped: nobody waits for it any more.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from engine.errors import ElementError


class Workers:
    """A thread pool the event loop hands work to without ever waiting."""

    def __init__(self, max_workers: int):
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="bedrock")
        self._jobs: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._dispatcher = threading.Thread(target=self._dispatch, name="bedrock-dispatch", daemon=True)
        self._closed = False
        self._dispatcher.start()

    def run[*Ts, T](self, fn: Callable[[*Ts], T], *args: *Ts) -> asyncio.Future[T]:
        """`fn(*args)` in a worker thread; the returned future settles on the calling loop."""
        if self._closed:
            raise _closed_error()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put(_Job(loop, future, partial(fn, *args)))
        return future

    def shutdown(self) -> None:
        """Work already queued still runs (and fails fast on the closed client); later jobs fail."""
        self._closed = True
        self._jobs.put(None)
        self._executor.shutdown(wait=False)

    def _dispatch(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                self._executor.submit(job.run)
            except RuntimeError:  # shut down
                job.fail(_closed_error())


def call_soon[*Ts](loop: asyncio.AbstractEventLoop, fn: Callable[[*Ts], object], *args: *Ts) -> bool:
    """`fn(*args)` on `loop`, from any thread; False when the loop is closed (nobody listens)."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        return False
    return True


@dataclass(frozen=True)
class _Job[T]:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[T]
    call: Callable[[], T]

    def run(self) -> None:
        """In a worker thread: the call, then its outcome handed to the loop."""
        try:
            result = self.call()
        except BaseException as exc:
            self.fail(exc)
        else:
            call_soon(self.loop, _set_result, self.future, result)

    def fail(self, error: BaseException) -> None:
        call_soon(self.loop, _set_exception, self.future, error)


def _set_result[T](future: asyncio.Future[T], result: T) -> None:
    if not future.cancelled():
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.cancelled():
        future.set_exception(error)


def _closed_error() -> ElementError:
    return ElementError("the Bedrock service is closed", error_type="service_closed")

"""`BedrockService`: the `engine.ports.LlmService` of the LLM elements, on Bedrock's Converse API.

Contract:
- One per hub (so one per process; `ServiceHub.bedrock` builds it): one boto3 client,
  created lazily on first use (`services.bedrock.client`), and one dedicated thread pool of
  `BEDROCK_MAX_CONCURRENCY` threads (`services.bedrock.workers`) in which every call runs,
  never on the loop. `BEDROCK_MAX_ATTEMPTS` is botocore's attempts per call, the first included.
  Building the service needs no credentials and opens no connection.
- `generate_text(request, on_text)` calls `converse_stream` and hands each text delta (`str`)
  to `on_text` on the loop as soon as botocore parses its frame (thread → loop with
  `call_soon_threadsafe`, no queue or generator step per delta: the token path), then returns
  one `StreamEnd` with the full text, usage and stop reason. Cancelling the awaiting coroutine
  hangs up the HTTP stream at once (`services.bedrock.streaming`).
- `converse_tool(request, tool)` calls `converse` with the tool forced (`toolChoice`) and
  returns the tool input plus the assistant content (for a repair turn).
- Every failure reaches the caller as an `engine.errors` type with a stable `error_type`
  (`services.bedrock.errors`); messages never contain a secret from settings.
- `close()` stops the thread pool and closes the client; `ServiceHub.aclose()` calls it. It is
  idempotent, and calls after it fail (`service_closed`) instead of hanging.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from engine.errors import ElementError
from engine.events import Redactor
from engine.llm import ConverseRequest, StreamEnd, ToolReply, ToolSpec
from engine.settings import Settings
from services.bedrock.client import BedrockClient, new_client
from services.bedrock.errors import element_error
from services.bedrock.replies import TextCollector, tool_reply
from services.bedrock.streaming import StreamHandle, fail_with
from services.bedrock.workers import Workers, call_soon


class BedrockService:
    def __init__(self, settings: Settings, *, max_attempts: int | None = None, max_workers: int | None = None):
        self.settings = settings
        self.max_attempts = max_attempts or settings.bedrock_max_attempts
        self.max_workers = max_workers or settings.bedrock_max_concurrency
        self._workers = Workers(self.max_workers)
        self._redactor = Redactor(settings.secret_values())
        self._client_lock = threading.Lock()
        self._client: BedrockClient | None = None

    # public API

    async def generate_text(self, request: ConverseRequest, on_text: Callable[[str], None]) -> StreamEnd:
        """Stream `request`, calling `on_text` on the loop for every delta as it arrives: straight
        from the reading thread's hand-off, without a queue or a generator step per delta."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[StreamEnd] = loop.create_future()
        handle = StreamHandle()

        def deliver(item: str | StreamEnd | ElementError) -> None:  # on the loop, in the thread's order
            if done.done():
                return
            if isinstance(item, str):
                try:
                    on_text(item)
                except Exception as exc:
                    done.set_exception(exc)
                    handle.cancel()
            elif isinstance(item, StreamEnd):
                done.set_result(item)
            else:
                done.set_exception(item)

        def push(item: str | StreamEnd | ElementError) -> None:
            if not call_soon(loop, deliver, item):  # the loop is gone: nobody listens any more
                handle.cancel()

        def ended(job: asyncio.Future[None]) -> None:  # after every delivery: they were handed over first
            fail_with(done, job)
            if not done.done():
                done.set_exception(
                    ElementError(
                        f"the Bedrock stream of model '{request.model_id}' ended early", error_type="model_error"
                    )
                )

        self._workers.run(self._pump_stream, request, handle, push).add_done_callback(ended)
        try:
            return await done
        finally:
            if not done.done() or done.cancelled():
                handle.cancel()

    async def converse_tool(self, request: ConverseRequest, tool: ToolSpec) -> ToolReply:
        """One `converse` call that forces the model to call `tool`."""
        return await self._workers.run(self._converse_tool, request, tool)

    def close(self) -> None:
        self._workers.shutdown()
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # in the thread pool

    def _pump_stream(
        self, request: ConverseRequest, handle: StreamHandle, push: Callable[[str | StreamEnd | ElementError], None]
    ) -> None:
        try:
            stream = self._call(request, lambda client: client.converse_stream(**request.to_kwargs()))["stream"]
            if not handle.attach(stream):
                return
            collector = TextCollector()
            for event in stream:
                if handle.cancelled:
                    return
                text = collector.add(event)
                if text:
                    push(text)
            push(collector.end())
        except Exception as exc:
            if not handle.cancelled:
                push(element_error(exc, request.model_id, self._redactor))
        finally:
            handle.release()

    def _converse_tool(self, request: ConverseRequest, tool: ToolSpec) -> ToolReply:
        response = self._call(
            request, lambda client: client.converse(**request.to_kwargs(), toolConfig=tool.to_config())
        )
        return tool_reply(response)

    def _call[T](self, request: ConverseRequest, call: Callable[[BedrockClient], T]) -> T:
        """`call` on the client; any failure (client creation included) as an `ElementError`."""
        try:
            return call(self._get_client())
        except Exception as exc:
            raise element_error(exc, request.model_id, self._redactor) from exc

    def _get_client(self) -> BedrockClient:
        with self._client_lock:
            if self._client is None:
                self._client = new_client(
                    self.settings, max_attempts=self.max_attempts, max_pool_connections=self.max_workers
                )
            return self._client

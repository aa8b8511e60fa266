"""AWS Bedrock Runtime through boto3's Converse API, for the LLM elements.

Contract:
- `ServiceHub.get("bedrock")` builds one `BedrockService` per hub (so one per process): one
  boto3 `bedrock-runtime` client, created lazily on first use, with region, credentials and the
  optional `BEDROCK_ENDPOINT_URL` from settings, botocore's adaptive retry mode (client-side
  rate limiting plus retries of throttling and 5xx), and a connection pool as large as its
  dedicated thread pool. boto3 blocks, so every call runs in that pool, never on the loop; the
  loop hands work over through a queue and never waits for a thread to start (`_Workers`).
- `stream_text(request)` calls `converse_stream` and yields each text delta (`str`) as soon as
  botocore parses its frame (thread → loop with `call_soon_threadsafe`), then one `StreamEnd`
  with the full text, usage and stop reason. `generate_text(request, on_text)` wraps it.
  Cancelling the awaiting coroutine (or closing the generator) hangs up the HTTP stream at once:
  the socket is shut down from the loop side, which also wakes the reading thread.
- `converse_tool(request, tool)` calls `converse` with the tool forced (`toolChoice`) and
  returns the tool input plus the assistant content (for a repair turn).
- Failures become `engine.errors` types with a stable `error_type`: `missing_credentials`
  (ConfigurationError, raised when the element runs, never at import or hub start),
  `invalid_credentials`, `access_denied`, `throttled` (TransientError, after botocore's own
  retries), `service_unavailable` / `network` (TransientError), `validation`,
  `model_not_found`, `model_error`. Messages never contain a secret from settings.
- `close()` stops the thread pool and closes the client; `ServiceHub.aclose()` calls it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from dataclasses import dataclass
from functools import partial
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from engine.errors import ConfigurationError, ElementError, TransientError
from engine.events import Redactor
from engine.llm import ConverseRequest, StreamEnd, ToolReply, ToolSpec
from engine.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 4  # total attempts per call, the first included
DEFAULT_MAX_WORKERS = 1024  # concurrent Bedrock calls (streams) per process
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 300.0  # longest silence: between two stream frames, or a whole `converse` answer


def usage_dict(usage: Mapping[str, Any] | None) -> dict[str, int]:
    """Converse `usage` in snake_case: input_tokens, output_tokens, total_tokens."""
    usage = usage or {}
    keys = {"input_tokens": "inputTokens", "output_tokens": "outputTokens", "total_tokens": "totalTokens"}
    return {name: int(usage.get(key) or 0) for name, key in keys.items()}


# -- errors ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    error_type: str
    advice: str
    cls: type[ElementError] = ElementError


_AGAIN = "; try again later"
_CLIENT_ERRORS = {  # by lower-case error code
    "accessdeniedexception": _Rule("access_denied", "allow this model in IAM and enable model access in the region"),
    "unrecognizedclientexception": _Rule("invalid_credentials", "check AWS_ACCESS_KEY_ID", ConfigurationError),
    "invalidsignatureexception": _Rule("invalid_credentials", "check AWS_SECRET_ACCESS_KEY", ConfigurationError),
    "expiredtokenexception": _Rule("invalid_credentials", "refresh AWS_SESSION_TOKEN", ConfigurationError),
    "throttlingexception": _Rule("throttled", "still throttled after retries" + _AGAIN, TransientError),
    "servicequotaexceededexception": _Rule("throttled", "a Bedrock quota is exhausted; raise it or lower the load"),
    "validationexception": _Rule("validation", "check the element's model_id, prompt and inference settings"),
    "resourcenotfoundexception": _Rule("model_not_found", "check model_id (or BEDROCK_MODEL_ID) and the region"),
    "internalserverexception": _Rule("service_unavailable", "Bedrock failed internally" + _AGAIN, TransientError),
    "serviceunavailableexception": _Rule("service_unavailable", "Bedrock is unavailable" + _AGAIN, TransientError),
    "modelnotreadyexception": _Rule("service_unavailable", "the model is not ready" + _AGAIN, TransientError),
    "modeltimeoutexception": _Rule("service_unavailable", "the model took too long" + _AGAIN, TransientError),
}
_OTHER_ERROR = _Rule("model_error", "the model could not answer this request")
_NETWORK_ERRORS = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
    ResponseStreamingError,
)


def element_error(exc: BaseException, model_id: str, redactor: Redactor) -> ElementError:
    """The `ElementError` a botocore failure means to the user; secrets are masked."""
    if isinstance(exc, ElementError):
        return exc
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return _missing_credentials(str(exc))
    if isinstance(exc, ClientError):
        return _client_error(exc, model_id, redactor)
    if isinstance(exc, _NETWORK_ERRORS):
        return TransientError(redactor.text(f"could not reach Bedrock: {exc}"), error_type="network")
    message = redactor.text(f"Bedrock call for model '{model_id}' failed: {exc.__class__.__name__}: {exc}")
    return ElementError(message, error_type="model_error")


def _client_error(exc: ClientError, model_id: str, redactor: Redactor) -> ElementError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code") or "Unknown")
    detail = str(error.get("Message") or "").strip()
    rule = _CLIENT_ERRORS.get(code.lower(), _OTHER_ERROR)
    message = f"Bedrock {code} for model '{model_id}'" + (f": {detail}" if detail else "") + f" — {rule.advice}"
    return rule.cls(redactor.text(message), error_type=rule.error_type)


def _missing_credentials(detail: str) -> ConfigurationError:
    return ConfigurationError(
        f"no AWS credentials for Bedrock ({detail}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
        "(or give the process an IAM role)",
        error_type="missing_credentials",
    )


# -- streaming plumbing ----------------------------------------------------------------------


class _StreamHandle:
    """Shared by the reading thread and the loop: lets the loop hang up an open stream."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stream: Any = None
        self.cancelled = False

    def attach(self, stream: Any) -> bool:
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
            _hang_up(stream)

    def release(self) -> None:
        """Called by the thread when it is done with the stream."""
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()


def _hang_up(stream: Any) -> None:
    """Shut the reading side of the stream's socket: the blocked reader wakes up at once and
    closes the connection. A stream already read to its end (connection back in the pool) is
    left alone."""
    raw = getattr(stream, "_raw_stream", None)
    try:
        if hasattr(raw, "shutdown"):
            raw.shutdown()  # urllib3 >= 2.3
        else:
            stream.close()
    except (ValueError, RuntimeError, OSError):
        pass


class _TextCollector:
    """Folds ConverseStream events into the full text, usage and stop reason."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.usage: dict[str, int] = usage_dict(None)
        self.stop_reason: str | None = None

    def add(self, event: Mapping[str, Any]) -> str | None:
        """The text delta of `event`, if any."""
        if "contentBlockDelta" in event:
            text = event["contentBlockDelta"].get("delta", {}).get("text")
            if text:
                self.parts.append(text)
            return text or None
        if "messageStop" in event:
            self.stop_reason = event["messageStop"].get("stopReason")
        elif "metadata" in event:
            self.usage = usage_dict(event["metadata"].get("usage"))
        return None

    def end(self) -> StreamEnd:
        return StreamEnd("".join(self.parts), self.usage, self.stop_reason)


class _Workers:
    """A thread pool the event loop hands work to without ever waiting.

    `ThreadPoolExecutor.submit` starts a new thread when none is idle, and a thread start waits
    for the new thread to get the GIL: with hundreds of busy boto3 threads, 1,000 submits from
    the loop blocked it for ~5 s. Here the loop only puts the job on a queue; a dispatcher
    thread submits it, and the result comes back with `call_soon_threadsafe`.
    """

    def __init__(self, max_workers: int):
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="bedrock")
        self._jobs: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._dispatcher = threading.Thread(target=self._dispatch, name="bedrock-dispatch", daemon=True)
        self._closed = False
        self._dispatcher.start()

    def run(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """`fn(*args)` in a worker thread; the returned future settles on the calling loop."""
        if self._closed:
            raise ElementError("the Bedrock service is closed", error_type="service_closed")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put((loop, future, fn, args))
        return future

    def shutdown(self) -> None:
        """Work already queued still runs (and fails fast on the closed client); later jobs fail."""
        self._closed = True
        self._jobs.put(None)
        self._executor.shutdown(wait=False)

    def _dispatch(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                self._executor.submit(_run_job, *job)
            except RuntimeError:  # shut down
                loop, future, _fn, _args = job
                closed = ElementError("the Bedrock service is closed", error_type="service_closed")
                _settle_threadsafe(loop, future, None, closed)


def _run_job(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], fn: Callable[..., Any], args: tuple) -> None:
    try:
        outcome: tuple[Any, BaseException | None] = (fn(*args), None)
    except BaseException as exc:
        outcome = (None, exc)
    _settle_threadsafe(loop, future, *outcome)


def _settle_threadsafe(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], result: Any, error: BaseException | None
) -> None:
    try:
        loop.call_soon_threadsafe(_settle, future, result, error)
    except RuntimeError:  # the loop is closed: nobody waits for this any more
        pass


def _forward_failure(items: asyncio.Queue[Any], done: asyncio.Future[Any]) -> None:
    """A stream's worker job that failed outright (service closed) ends the stream's items."""
    if not done.cancelled() and done.exception() is not None:
        items.put_nowait(done.exception())


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


# -- the service -----------------------------------------------------------------------------


class BedrockService:
    def __init__(self, settings: Settings, *, max_attempts: int | None = None, max_workers: int | None = None):
        self.settings = settings
        self.max_attempts = max_attempts or getattr(settings, "bedrock_max_attempts", DEFAULT_MAX_ATTEMPTS)
        self.max_workers = max_workers or getattr(settings, "bedrock_max_concurrency", DEFAULT_MAX_WORKERS)
        self._workers = _Workers(self.max_workers)
        self._redactor = Redactor(settings.secret_values())
        self._client_lock = threading.Lock()
        self._client: Any = None

    # public API

    async def stream_text(self, request: ConverseRequest) -> AsyncIterator[str | StreamEnd]:
        """Text deltas as they arrive, then one `StreamEnd`. Use with `contextlib.aclosing`."""
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[str | StreamEnd | BaseException] = asyncio.Queue()
        handle = _StreamHandle()

        def push(item: str | StreamEnd | ElementError) -> None:
            try:
                loop.call_soon_threadsafe(items.put_nowait, item)
            except RuntimeError:  # the loop is gone: nobody listens any more
                handle.cancel()

        pump = self._workers.run(self._pump_stream, request, handle, push)
        pump.add_done_callback(partial(_forward_failure, items))
        finished = False
        try:
            while not finished:
                item = await items.get()
                finished = not isinstance(item, str)
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            if not finished:
                handle.cancel()

    async def generate_text(self, request: ConverseRequest, on_text: Callable[[str], None]) -> StreamEnd:
        """Stream `request`, calling `on_text` for every delta as it arrives."""
        async with aclosing(self.stream_text(request)) as events:
            async for event in events:
                if isinstance(event, StreamEnd):
                    return event
                on_text(event)
        raise ElementError(f"the Bedrock stream of model '{request.model_id}' ended early", error_type="model_error")

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

    def _pump_stream(self, request: ConverseRequest, handle: _StreamHandle, push: Callable[[Any], None]) -> None:
        try:
            stream = self._call("converse_stream", request.model_id, **request.to_kwargs())["stream"]
            if not handle.attach(stream):
                return
            collector = _TextCollector()
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
        response = self._call("converse", request.model_id, **request.to_kwargs(), toolConfig=tool.to_config())
        content = response.get("output", {}).get("message", {}).get("content", [])
        tool_use = next((block["toolUse"] for block in content if "toolUse" in block), None)
        return ToolReply(
            tool_use_id=tool_use.get("toolUseId") if tool_use else None,
            input=tool_use.get("input") if tool_use else None,
            content=content,
            usage=usage_dict(response.get("usage")),
            stop_reason=response.get("stopReason"),
        )

    def _call(self, operation: str, model_id: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._get_client(), operation)(**kwargs)
        except Exception as exc:
            raise element_error(exc, model_id, self._redactor) from exc

    def _get_client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = self._new_client()
            return self._client

    def _new_client(self) -> Any:
        session = boto3.session.Session(region_name=self.settings.aws_region, **self._credentials())
        if session.get_credentials() is None:
            raise _missing_credentials("none in settings, environment, config files or instance role")
        config = Config(
            retries={"mode": "adaptive", "total_max_attempts": self.max_attempts},
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            max_pool_connections=self.max_workers,
            tcp_keepalive=True,
        )
        endpoint = self.settings.bedrock_endpoint_url or None
        client = session.client("bedrock-runtime", endpoint_url=endpoint, config=config)
        logger.info("bedrock client ready: region=%s endpoint=%s", self.settings.aws_region, endpoint or "AWS")
        return client

    def _credentials(self) -> dict[str, str]:
        """Explicit keys from settings, or nothing (botocore's default chain then applies)."""
        names = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
        values = {name: getattr(self.settings, name) for name in names}
        values = {name: value.get_secret_value() for name, value in values.items() if value is not None}
        values = {name: value for name, value in values.items() if value}
        pair = ("aws_access_key_id", "aws_secret_access_key")
        missing = [name.upper() for name in pair if name not in values]
        if len(missing) == 1:
            raise _missing_credentials(f"{missing[0]} is not set")
        return values if not missing else {}

"""The boto3 `bedrock-runtime` client: how it is made, and the typed face the service calls.

Contract: `new_client(settings, max_attempts=…, max_pool_connections=…)` builds one client with
- region (`AWS_REGION`) and the optional `BEDROCK_ENDPOINT_URL` from settings;
- credentials: the explicit keys from settings (`AWS_ACCESS_KEY_ID` with
  `AWS_SECRET_ACCESS_KEY`, optionally `AWS_SESSION_TOKEN`), else botocore's default chain
  (environment, config files, instance role). Only one key of the pair set, or no credentials
  anywhere, is `missing_credentials` (ConfigurationError) — raised here, that is when the first
  call needs the client, never at import or hub start;
- botocore's adaptive retry mode (client-side rate limiting plus retries of throttling and
  5xx), `max_attempts` attempts per call, the first included;
- a 5 s connect timeout, a 300 s read timeout (the longest silence: between two stream
  frames, or a whole `converse` answer), TCP keepalive, and a connection pool of
  `max_pool_connections` (as large as the service's thread pool).
It logs the region and endpoint, never a secret. `BedrockClient` is what the service calls on
the untyped boto3 client, with the answer shapes of `services.bedrock.replies`.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import boto3
from botocore.config import Config

from engine.settings import Settings
from services.bedrock.errors import missing_credentials
from services.bedrock.replies import ConverseResponse, ConverseStreamResponse

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 300.0  # longest silence: between two stream frames, or a whole `converse` answer


class BedrockClient(Protocol):
    """The calls the service makes on boto3's `bedrock-runtime` client (keyword arguments in
    Converse form, as `engine.llm.ConverseRequest.to_kwargs` gives them)."""

    def converse(self, **kwargs: Any) -> ConverseResponse: ...

    def converse_stream(self, **kwargs: Any) -> ConverseStreamResponse: ...

    def close(self) -> None: ...


def new_client(settings: Settings, *, max_attempts: int, max_pool_connections: int) -> BedrockClient:
    """A `bedrock-runtime` client; ConfigurationError `missing_credentials` when there are none."""
    session = boto3.session.Session(region_name=settings.aws_region, **_credentials(settings))
    if session.get_credentials() is None:
        raise missing_credentials("none in settings, environment, config files or instance role")
    config = Config(
        retries={"mode": "adaptive", "total_max_attempts": max_attempts},
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        max_pool_connections=max_pool_connections,
        tcp_keepalive=True,
    )
    endpoint = settings.bedrock_endpoint_url or None
    client: BedrockClient = session.client("bedrock-runtime", endpoint_url=endpoint, config=config)
    logger.info("bedrock client ready: region=%s endpoint=%s", settings.aws_region, endpoint or "AWS")
    return client


def _credentials(settings: Settings) -> dict[str, str]:
    """Explicit keys from settings, or nothing (botocore's default chain then applies)."""
    secrets = {
        "aws_access_key_id": settings.aws_access_key_id,
        "aws_secret_access_key": settings.aws_secret_access_key,
        "aws_session_token": settings.aws_session_token,
    }
    values = {name: secret.get_secret_value() for name, secret in secrets.items() if secret is not None}
    values = {name: value for name, value in values.items() if value}
    pair = ("aws_access_key_id", "aws_secret_access_key")
    missing = [name.upper() for name in pair if name not in values]
    if len(missing) == 1:
        raise missing_credentials(f"{missing[0]} is not set")
    return values if not missing else {}

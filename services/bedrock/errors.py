"""What a failed Bedrock call means to the user: botocore exceptions → `engine.errors` types.

Contract: `element_error(exc, model_id, redactor)` maps any exception of a Bedrock call to an
`ElementError` with a stable `error_type`:
- `missing_credentials` (ConfigurationError; raised when the element runs, never at import or
  hub start — see `missing_credentials`),
- `invalid_credentials` (ConfigurationError), `access_denied`, `validation`,
  `model_not_found`, `model_error` (anything unrecognised, an error frame mid-stream included),
- `throttled` (TransientError, after botocore's own retries; an exhausted service quota is
  `throttled` too, but not transient), `service_unavailable` / `network` (TransientError).
Each message names the model and says what to do. Messages never contain a secret from
settings: every one passes through the settings' `Redactor`. An `ElementError` is returned as is.
"""

from __future__ import annotations

from dataclasses import dataclass

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
        return missing_credentials(str(exc))
    if isinstance(exc, ClientError):
        return _client_error(exc, model_id, redactor)
    if isinstance(exc, _NETWORK_ERRORS):
        return TransientError(redactor.text(f"could not reach Bedrock: {exc}"), error_type="network")
    message = redactor.text(f"Bedrock call for model '{model_id}' failed: {exc.__class__.__name__}: {exc}")
    return ElementError(message, error_type="model_error")


def missing_credentials(detail: str) -> ConfigurationError:
    """No usable AWS credentials; `detail` says what is missing (never a secret)."""
    return ConfigurationError(
        f"no AWS credentials for Bedrock ({detail}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
        "(or give the process an IAM role)",
        error_type="missing_credentials",
    )


def _client_error(exc: ClientError, model_id: str, redactor: Redactor) -> ElementError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code") or "Unknown")
    detail = str(error.get("Message") or "").strip()
    rule = _CLIENT_ERRORS.get(code.lower(), _OTHER_ERROR)
    message = f"Bedrock {code} for model '{model_id}'" + (f": {detail}" if detail else "") + f" — {rule.advice}"
    return rule.cls(redactor.text(message), error_type=rule.error_type)

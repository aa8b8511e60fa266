"""Errors an element run can end with, and how they become `element_error` events.

Contract: every failure the scheduler reports carries a stable snake_case `error_type`, a plain
`message` that names the element's field and what to do, and a `transient` flag that says
whether a `retry` policy may try again (throttling, network). Any other exception raised by an
element is reported with its class name as `error_type`.
"""

from __future__ import annotations


class ElementError(Exception):
    """A failure of one element, reported to the user as `element_error`."""

    error_type = "element_error"
    transient = False

    def __init__(self, message: str, *, error_type: str | None = None, transient: bool | None = None):
        super().__init__(message)
        self.message = message
        if error_type is not None:
            self.error_type = error_type
        if transient is not None:
            self.transient = transient


class InputValidationError(ElementError):
    error_type = "input_invalid"


class OutputValidationError(ElementError):
    error_type = "output_invalid"


class ConfigurationError(ElementError):
    """Missing credentials or settings the element needs; fails only that element."""

    error_type = "configuration_error"


class TransientError(ElementError):
    """Worth retrying: throttling, a dropped connection, a node answering 5xx."""

    error_type = "transient_error"
    transient = True


class ElementTimeout(ElementError):
    error_type = "timeout"


class ElementCancelled(ElementError):
    error_type = "cancelled"


class SubFlowFailed(ElementError):
    """A run of an element's inline sub-flow failed; `error_type` and the message come from the
    inner element that failed it (the message says which, and in which run)."""


class RunStopped(ElementError):
    """The whole flow is stopping (a run guard tripped, or it is cancelled): an element that runs
    sub-flows must not absorb this as the failure of one of its runs (`on_item_error`)."""

    error_type = "cancelled"


def describe(exc: BaseException) -> tuple[str, str]:
    """`(error_type, message)` for any exception an element raised."""
    if isinstance(exc, ElementError):
        return exc.error_type, exc.message
    message = str(exc) or exc.__class__.__name__
    return exc.__class__.__name__, message


def is_transient(exc: BaseException) -> bool:
    return bool(getattr(exc, "transient", False))

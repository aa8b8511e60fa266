"""Logging for every process of the service: level from settings, secrets masked, controls escaped.

Contract: after `configure_logging(settings)`, no log record of this process shows the value
of an AWS key, the Aptos private key or `API_KEY`: a filter on every root handler replaces
them with `***` in the formatted message and its arguments. The same filter escapes control
characters (C0, DEL, C1), bidirectional controls and line separators in the message as
`\\xNN` / `\\uNNNN`, so a value a caller chose (a flow id, a URL, an error text) cannot forge
a log line or reorder what a terminal shows; a traceback keeps its line breaks only.
"""

from __future__ import annotations

import logging
import re

from engine.events import Redactor
from engine.settings import Settings

_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_CONTROLS_BUT_NEWLINE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str, keep_newlines: bool = False) -> str:
    """`text` with every control, bidi and line-separator character written as an escape."""
    return (_CONTROLS_BUT_NEWLINE if keep_newlines else _CONTROLS).sub(_escape, text)


class SecretFilter(logging.Filter):
    def __init__(self, redactor: Redactor):
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = escape_controls(self._redactor.text(message) if self._redactor else message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = escape_controls(self._redactor.text(text) if self._redactor else text, keep_newlines=True)
            record.exc_info = None
        return True


def configure_logging(settings: Settings) -> SecretFilter:
    root = logging.getLogger()
    root.setLevel(settings.log_level.upper())
    secret_filter = SecretFilter(Redactor(settings.secret_values()))
    if not root.handlers:
        logging.basicConfig(level=settings.log_level.upper())
    for handler in root.handlers:
        handler.addFilter(secret_filter)
    return secret_filter

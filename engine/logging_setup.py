"""Logging for every process of the service: level from settings, secrets masked.

Contract: after `configure_logging(settings)`, no log record of this process shows the value
of an AWS key, the Aptos private key or `API_KEY`: a filter on every root handler replaces
them with `***` in the formatted message and its arguments.
"""

from __future__ import annotations

import logging

from engine.events import Redactor
from engine.settings import Settings


class SecretFilter(logging.Filter):
    def __init__(self, redactor: Redactor):
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if self._redactor:
            message = record.getMessage()
            record.msg = self._redactor.text(message)
            record.args = None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = self._redactor.text(logging.Formatter().formatException(record.exc_info))
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

"""Log lines: secrets masked and caller-chosen control characters escaped."""

import logging

from engine.events import Redactor
from engine.logging_setup import SecretFilter, escape_controls


def format_through_filter(message: str, *args) -> str:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, message, args, None)
    assert SecretFilter(Redactor(["s3cret-value"])).filter(record)
    return logging.Formatter("%(message)s").format(record)


def test_control_and_bidi_characters_cannot_forge_lines():
    hostile = "flow\x1b[2K\r\nINFO forged line\u202eevil\x00\x85\u2028"
    line = format_through_filter("flow %s: started", hostile)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert "\u202e" not in line and "\x00" not in line and "\x85" not in line and "\u2028" not in line
    assert line == "flow flow\\x1b[2K\\x0d\\x0aINFO forged line\\u202eevil\\x00\\x85\\u2028: started"


def test_secrets_are_masked_before_escaping():
    assert format_through_filter("key=%s", "s3cret-value") == "key=***"


def test_tracebacks_keep_their_line_breaks_only():
    assert escape_controls("a\nb\x1bc", keep_newlines=True) == "a\nb\\x1bc"
    try:
        raise ValueError("bad\x1b[31m")
    except ValueError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", None, __import__("sys").exc_info())
    SecretFilter(Redactor([])).filter(record)
    assert "\n" in record.exc_text and "\x1b" not in record.exc_text

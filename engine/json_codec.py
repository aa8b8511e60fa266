"""The JSON of events as they are stored and sent: one fast encoder, the standard one behind it.

Contract:
- `encode(value)` is the compact UTF-8 JSON of `value` as bytes (orjson: no whitespace,
  characters beyond ASCII as UTF-8). What JSON has no form for comes out as the standard
  library's `json.dumps(value, default=str)` makes it — `str(x)` for a datetime, a set, bytes
  or any other object — but a pydantic model as its `model_dump()` and a dataclass as its
  fields (as `Event.model_dump` made them). A value orjson refuses (a key that is not a string,
  an integer beyond 64 bits, a string with a lone surrogate, nesting deeper than 254) is
  encoded by `json.dumps(value, separators=(",", ":"))` with the same fallbacks instead (ASCII,
  `\\u` escapes); what that refuses too raises its error (`ValueError` for a circular value,
  `RecursionError`, `TypeError`). NaN and the infinities, which are not JSON and which no
  element produces, come out as `null`.
- `decode(data)` parses JSON text (`bytes` or `str`); `ValueError` (orjson's `JSONDecodeError`)
  for what is not JSON.
Both are pure and thread-safe.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import orjson
from pydantic import BaseModel

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME  # datetimes as `str(d)`, as `default=str` made them


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # orjson's own form, for `json`
        return dataclasses.asdict(value)
    return str(value)


def encode(value: Any) -> bytes:
    try:
        return orjson.dumps(value, default=_default, option=_OPTIONS)
    except orjson.JSONEncodeError:
        return json.dumps(value, default=_default, separators=(",", ":")).encode()


def decode(data: bytes | str) -> Any:
    return orjson.loads(data)

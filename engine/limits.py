"""Shape limits of the JSON-like values that flow between elements: nesting depth and size.

Contract:
- `measure(value, max_depth=None)` walks a JSON-like value (dict, list, tuple, str, int, float,
  bool, None) without recursion, so it works on values nested 100,000 deep, and returns its
  nesting depth and the exact size in bytes of its compact UTF-8 JSON
  (`json.dumps(value, ensure_ascii=False, separators=(",", ":"))`). With `max_depth` it stops
  as soon as the value is deeper than that and reports `depth = max_depth + 1, size = None`
  (a circular value then counts as too deep). It raises `TypeError` for what JSON cannot
  carry (a set, bytes, a non-scalar key) and, without `max_depth`, `ValueError` for a circular
  value — as `json.dumps` would.
- `depth_exceeds(value, max_depth)` is the cheap depth-only form of the same walk.
- Depth counts containers: a scalar is 0 deep, `[]` and `{}` are 1, `{"a": [1]}` is 2; the
  `inputs` / `outputs` dict of an element is itself one level.
- `MAX_VALUE_DEPTH = 100`: real data (API responses, LLM JSON, configs) is rarely more than 20
  deep, while everything that handles values recursively — `json` and `pickle` (~1,500 C
  levels), pydantic, Python code with its 1,000-frame limit, the user's own code — fails
  somewhere between a few hundred and 1,500 levels. 100 is far above the first and far below
  the second, with room for the few levels of envelope events and frames wrap around a value.
- `MAX_EVENT_DEPTH = 2 * MAX_VALUE_DEPTH`: what the event redactor keeps; deeper parts of an
  event are replaced by `TOO_DEEP`.

Pure: no Ray, no SDKs, no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_VALUE_DEPTH = 100
MAX_EVENT_DEPTH = 2 * MAX_VALUE_DEPTH
TOO_DEEP = "<nested too deeply>"

_encode_str = json.encoder.encode_basestring  # C version when available
_encode_str_ascii = json.encoder.encode_basestring_ascii
_CLOSED = -1  # stack marker (in place of a depth): the container with this id is finished


@dataclass(frozen=True)
class ValueMeasure:
    depth: int  # container levels; max_depth + 1 when the walk stopped early
    size: int | None  # bytes of compact UTF-8 JSON; None when the walk stopped early


def measure(value: Any, max_depth: int | None = None) -> ValueMeasure:
    """Nesting depth and compact UTF-8 JSON size of `value`, computed without recursion."""
    return _walk(value, max_depth, sizes=True)


def depth_exceeds(value: Any, max_depth: int) -> bool:
    """True if `value` is nested more than `max_depth` containers deep (or is circular)."""
    return _walk(value, max_depth, sizes=False).depth > max_depth


def json_size(value: Any) -> int:
    """Bytes of `value` as compact UTF-8 JSON (any depth)."""
    size = measure(value).size
    assert size is not None
    return size


def describe_size(size: int) -> str:
    """`67,108,864 bytes (64.0 MB)`: exact, and readable at a glance."""
    return f"{size:,} bytes ({size / (1024 * 1024):.1f} MB)"


def _str_size(text: str) -> int:
    if text.isascii():
        return len(_encode_str_ascii(text))  # one byte per character, escapes included
    try:
        return len(_encode_str(text).encode())
    except UnicodeEncodeError:  # a lone surrogate: not UTF-8; counted as it is escaped (\udxxx)
        return len(_encode_str_ascii(text))


def _scalar_size(item: Any) -> int:
    if isinstance(item, str):
        return _str_size(item)
    if item is None or item is True:
        return 4
    if item is False:
        return 5
    if isinstance(item, int):
        return len(int.__repr__(item))  # ValueError past the int-to-str digit limit, as json does
    if isinstance(item, float):
        if item != item:
            return 3  # NaN
        if item in (float("inf"), float("-inf")):
            return 8 if item > 0 else 9  # Infinity / -Infinity
        return len(float.__repr__(item))
    raise TypeError(f"Object of type {type(item).__name__} is not JSON serializable")


def _key_size(key: Any) -> int:
    if isinstance(key, str):
        return _str_size(key)
    if key is None or isinstance(key, bool | int | float):
        return _scalar_size(key) + 2  # json writes the scalar as a quoted string
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


def _walk(value: Any, max_depth: int | None, *, sizes: bool) -> ValueMeasure:
    if not isinstance(value, dict | list | tuple):
        return ValueMeasure(0, _scalar_size(value) if sizes else None)
    # An unbounded walk must detect a circular value itself; a bounded one ends at max_depth.
    track = max_depth is None
    open_ids: set[int] = set()  # containers on the current path (tracked walks only)
    deepest = 0
    size = 0
    stack: list[tuple[Any, int]] = [(value, 1)]  # (container, its depth) or (id, _CLOSED)
    while stack:
        item, depth = stack.pop()
        if depth == _CLOSED:
            open_ids.discard(item)
            continue
        if depth > deepest:
            deepest = depth
            if max_depth is not None and depth > max_depth:
                return ValueMeasure(depth, None)
        if track:
            if id(item) in open_ids:
                raise ValueError("Circular reference detected")
            open_ids.add(id(item))
            stack.append((id(item), _CLOSED))
        if isinstance(item, dict):
            children: Any = item.values()
            if sizes:  # braces, a colon per pair, commas between pairs, the keys
                size += 2 * len(item) + 1 if item else 2
                for key in item:
                    size += _str_size(key) if type(key) is str else _key_size(key)
        else:
            children = item
            if sizes:
                size += len(item) + 1 if item else 2
        child_depth = depth + 1
        for child in children:
            kind = type(child)
            if kind is str:
                if sizes:
                    size += _str_size(child)
            elif kind is int or kind is float or kind is bool or child is None:
                if sizes:
                    size += _scalar_size(child)
            elif isinstance(child, dict | list | tuple):
                stack.append((child, child_depth))
            elif sizes:
                size += _scalar_size(child)  # subclasses of str, int, float; TypeError for the rest
    return ValueMeasure(deepest, size if sizes else None)

"""Paths into JSON-like values: `a.b[0].c`, `items[-1]`, `["key with.dots"]`.

Contract: `parse_path` turns a path into a tuple of keys and indices (ValueError on bad syntax;
paths of up to 256 characters are cached, since a configured path is walked on every run);
`resolve(value, path)` walks it and raises `PathMissing` naming the first segment that does
not exist. Shared by `selector` and `case`.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

_TOKEN = re.compile(r"""\s*(?:\.?([A-Za-z_$][\w$-]*)|\[\s*(-?\d+)\s*\]|\[\s*("(?:[^"\\]|\\.)*")\s*\])""")


class PathMissing(LookupError):
    def __init__(self, path: str, segment: str):
        super().__init__(f"path '{path}' has no '{segment}'")
        self.path = path
        self.segment = segment


_CACHED_PATH_LENGTH = 256


def parse_path(path: str) -> tuple[str | int, ...]:
    return _parse_cached(path) if len(path) <= _CACHED_PATH_LENGTH else _parse(path)


def _parse(path: str) -> tuple[str | int, ...]:
    parts: list[str | int] = []
    position = 0
    path = path.strip()
    while position < len(path):
        match = _TOKEN.match(path, position)
        if match is None or match.end() == position:
            raise ValueError(f"invalid path '{path}' at character {position + 1}")
        name, index, quoted = match.groups()
        parts.append(name if name is not None else int(index) if index is not None else json.loads(quoted))
        position = match.end()
    return tuple(parts)


_parse_cached = lru_cache(maxsize=1024)(_parse)


def resolve(value: Any, path: str) -> Any:
    for part in parse_path(path):
        if isinstance(part, int) and isinstance(value, list | tuple) and -len(value) <= part < len(value):
            value = value[part]
        elif isinstance(part, str) and isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise PathMissing(path, f"[{part}]" if isinstance(part, int) else part)
    return value

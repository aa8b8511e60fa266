"""Frames between the sandbox client and its fork server: 4-byte big-endian length + JSON."""

from __future__ import annotations

import json
import struct
from typing import Any

HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024


def encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return HEADER.pack(len(body)) + body


def split_frames(buffer: bytearray) -> list[dict[str, Any]]:
    """Remove and decode every complete frame at the front of `buffer`."""
    frames = []
    while len(buffer) >= HEADER.size:
        (size,) = HEADER.unpack_from(buffer)
        if size > MAX_FRAME:
            raise ValueError(f"frame of {size} bytes is over the limit")
        if len(buffer) < HEADER.size + size:
            break
        frames.append(json.loads(bytes(buffer[HEADER.size : HEADER.size + size])))
        del buffer[: HEADER.size + size]
    return frames

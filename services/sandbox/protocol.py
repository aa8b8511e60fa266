"""Frames between the sandbox client and its fork server: 4-byte big-endian length + JSON.

`Answer` (for type checkers only: nothing is imported or defined for it at run time) is the
shape of a frame the server sends (see `forkserver`): its ready frame, or one run's answer.
"""

from __future__ import annotations

import json
import struct
from typing import TYPE_CHECKING, Any

HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024

if TYPE_CHECKING:
    from typing import TypedDict

    class Answer(TypedDict, total=False):
        id: str | None  # the run's id; None in the ready frame
        pid: int | None
        # one run: `ok` with `outputs` and `printed`, or not `ok` with `error_type` and `message`
        ok: bool
        outputs: dict[str, Any]
        printed: str
        error_type: str
        message: str
        # the ready frame
        ready: bool
        isolation: str
        layers: list[str]
        log: list[str]


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

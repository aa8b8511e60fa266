"""This process's resources: usage for actors' `stats`, and giving freed memory back to the OS.

- `process_usage()`: pid, resident memory (`rss_bytes`), open file descriptors (`open_fds`) and
  the memory blocks the interpreter holds (`python_blocks`, `sys.getallocatedblocks()`: every
  live allocation of Python's allocator, whatever its size — unlike RSS it does not keep a
  high-water mark, so a leak of Python objects shows as steady growth from round to round).
- `MemoryReclaimer`: long-lived actors free per-flow state in bursts (logs expiring after
  retention). CPython and glibc keep freed heap pages mapped, so resident memory stays at its
  high-water mark. `released(count, idle)` is told how many flows' state was just freed and
  whether nothing is held any more; it returns the memory to the OS (`gc.collect()` and glibc's
  `malloc_trim(0)`) when the actor goes idle, and under constant load every `every` releases
  (trim only: a full collection would stall the event loop). A no-op where glibc is absent.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
from collections.abc import Callable
from dataclasses import dataclass

import psutil


def process_usage() -> dict[str, int]:
    process = psutil.Process()
    return {
        "pid": process.pid,
        "rss_bytes": process.memory_info().rss,
        "open_fds": process.num_fds(),
        "python_blocks": sys.getallocatedblocks(),
    }


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc
        return None


@dataclass
class MemoryReclaimer:
    every: int = 1000
    pending: int = 0
    trims: int = 0

    def released(self, count: int, idle: bool) -> bool:
        """Note `count` freed flows; returns whether memory was given back just now."""
        self.pending += count
        if not self.pending or not (idle or self.pending >= self.every):
            return False
        if idle:
            gc.collect()
        trim = _malloc_trim()
        if trim is not None:
            trim(0)
        self.pending = 0
        self.trims += 1
        return True

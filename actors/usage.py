"""This process's pid, resident memory and open file descriptors — reported by actors' `stats`."""

import psutil


def process_usage() -> dict[str, int]:
    process = psutil.Process()
    return {"pid": process.pid, "rss_bytes": process.memory_info().rss, "open_fds": process.num_fds()}

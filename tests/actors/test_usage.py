"""Process usage figures and the memory reclaimer's trigger rules."""

import psutil

from actors.usage import MemoryReclaimer, process_usage


def test_process_usage_reports_this_process():
    usage = process_usage()
    assert usage["pid"] == psutil.Process().pid
    assert usage["rss_bytes"] > 10_000_000 and usage["open_fds"] > 0 and usage["python_blocks"] > 10_000


def test_reclaims_when_idle_or_every_n_releases():
    reclaimer = MemoryReclaimer(every=100)
    assert not reclaimer.released(0, idle=True)  # nothing freed: nothing to give back
    assert not reclaimer.released(60, idle=False)
    assert reclaimer.released(50, idle=False)  # 110 >= 100 under load
    assert reclaimer.pending == 0 and reclaimer.trims == 1
    assert reclaimer.released(1, idle=True)
    assert reclaimer.trims == 2


def test_reclaiming_gives_freed_heap_back_to_the_os():
    blocks = [bytearray(2000) for _ in range(30_000)]  # ~60 MB from malloc (not pymalloc)
    pinned = blocks[-1]  # a live block at the top keeps glibc from trimming by itself
    blocks.clear()
    before = psutil.Process().memory_info().rss
    assert MemoryReclaimer().released(1, idle=True)
    after = psutil.Process().memory_info().rss
    assert before - after > 20_000_000, (before, after)
    assert len(pinned) == 2000

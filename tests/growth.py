"""Telling a leak from a plateau in per-round usage figures.

A long-lived process reaches a high-water mark (allocator arenas, caches, pools) after its
first large burst and stays there; a leak keeps growing with every round of the same work.
So a leak test warms up with a full round, measures after each of several more rounds, and
asks for the *slope* of each figure over those rounds — never for the distance from a cold
start.

- `robust_slope(values)`: the Theil–Sen estimate (median of the slopes between every pair of
  rounds). One step up — a plateau reached late — moves it little; steady growth moves it fully.
- `growth_problems(rounds, limits)`: for each figure in `limits` (e.g. `rss_bytes`), a message
  when its slope per round is over the limit; empty when nothing grows. `rounds` is one usage
  dict (`actors.usage.process_usage()` shape) per measured round.
- `leak_limits(flows_per_round)`: the limits the service's leak test applies, shared with the
  test that proves the detector catches a small injected leak. Python blocks: 0.2 per flow (a
  leak of one small object per flow is 1 block or more). RSS: 4 KB per flow or 6 MB per round,
  whichever is more (RSS wanders by a few MB between rounds on a plateau). Open fds: 2 per round.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from statistics import median


def robust_slope(values: Sequence[float]) -> float:
    if len(values) < 2:
        raise ValueError("a slope needs at least two rounds")
    return median((values[j] - values[i]) / (j - i) for i, j in combinations(range(len(values)), 2))


def growth_problems(rounds: Sequence[Mapping[str, float]], limits: Mapping[str, float]) -> list[str]:
    problems = []
    for figure, limit in limits.items():
        series = [round_[figure] for round_ in rounds]
        slope = robust_slope(series)
        if slope > limit:
            problems.append(f"{figure} grows {slope:,.0f} per round (limit {limit:,.0f}): {series}")
    return problems


def leak_limits(flows_per_round: int) -> dict[str, float]:
    return {
        "python_blocks": 0.2 * flows_per_round,
        "rss_bytes": max(4096 * flows_per_round, 6 * 1024 * 1024),
        "open_fds": 2,
    }

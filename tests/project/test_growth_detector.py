"""The leak detector tells a leak from a plateau — on synthetic series and on a real leak.

The real leak is injected in this process: rounds of simulated flows that each keep 1 KB
(what a forgotten per-flow buffer would do), measured with the same usage figures and the
same limits as the service's leak test. Without the leak the same rounds pass.
"""

import gc

from actors.usage import process_usage
from tests.growth import growth_problems, leak_limits, robust_slope

MB = 1024 * 1024
FLOWS = 1500


def test_slope_ignores_a_single_late_step_but_not_steady_growth():
    assert robust_slope([105, 124, 124, 124]) < 7  # a plateau reached after the warm-up round
    assert robust_slope([124, 121, 124, 124]) < 2  # the streamer's measured plateau, MB
    assert robust_slope([100, 105, 110, 115]) == 5


def test_plateau_with_noise_passes_and_growth_fails():
    plateau = [{"rss_bytes": v * MB, "open_fds": 40, "python_blocks": 300_000 + d} for v, d in
               [(124, 30), (121, -50), (124, 10), (124, 40)]]  # fmt: skip
    assert growth_problems(plateau, leak_limits(FLOWS)) == []
    leaking = [{**r, "python_blocks": r["python_blocks"] + i * FLOWS} for i, r in enumerate(plateau)]
    assert growth_problems(leaking, leak_limits(FLOWS)) == [
        f"python_blocks grows 1,517 per round (limit 300): {[r['python_blocks'] for r in leaking]}"
    ]
    fd_leak = [{**r, "open_fds": 40 + 3 * i} for i, r in enumerate(plateau)]
    assert [p.split()[0] for p in growth_problems(fd_leak, leak_limits(FLOWS))] == ["open_fds"]


def simulated_rounds(kept: list, keep_bytes: int, rounds: int = 5) -> list[dict[str, int]]:
    """A warm-up round and `rounds - 1` measured ones of FLOWS simulated flows each."""
    measured = []
    for round_ in range(rounds):
        for flow in range(FLOWS):
            events = [{"seq": seq, "flow_id": f"f{round_}-{flow}", "data": {"v": seq}} for seq in range(6)]
            if keep_bytes:
                kept.append(bytes(keep_bytes))
            del events
        gc.collect()
        if round_:
            measured.append(process_usage())
    return measured


def test_an_injected_leak_of_one_kilobyte_per_flow_is_caught():
    kept: list = []
    problems = growth_problems(simulated_rounds(kept, 1024), leak_limits(FLOWS))
    assert any(p.startswith("python_blocks grows") for p in problems), problems


def test_the_same_rounds_without_the_leak_pass():
    assert growth_problems(simulated_rounds([], 0), leak_limits(FLOWS)) == []

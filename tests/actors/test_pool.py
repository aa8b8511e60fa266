"""The size of a new pool of coordinators (`actors.names.pool_size`)."""

import pytest

from actors.directory import store_problem
from actors.names import MAX_POOL, pool_size
from engine.settings import Settings


@pytest.mark.parametrize(
    ("setting", "cpus", "expected"),
    [(3, 64.0, 3), ("auto", 0.0, 2), ("auto", 2.0, 2), ("auto", 5.0, 2), ("auto", 8.0, 4), ("auto", 80.0, 40)],
)
def test_a_number_is_kept_and_auto_is_one_per_two_cpus_at_least_two(setting, cpus, expected):
    assert pool_size(setting, cpus) == expected


def test_auto_is_capped():
    assert pool_size("auto", 10_000.0) == MAX_POOL


def test_the_setting_is_auto_by_default_and_a_number_is_bounded():
    assert Settings.model_fields["coordinator_count"].default == "auto"  # (the environment may set it)
    assert Settings(_env_file=None, coordinator_count="7").coordinator_count == 7
    with pytest.raises(ValueError):
        Settings(_env_file=None, coordinator_count="0")
    with pytest.raises(ValueError):
        Settings(_env_file=None, coordinator_count="many")


def test_an_embedded_store_is_refused_on_nodes_of_several_hosts_only():
    assert store_problem("sqlite", {"10.0.0.1"}) is None
    assert store_problem("sqlite", set()) is None
    assert store_problem("postgres", {"10.0.0.1", "10.0.0.2"}) is None
    for kind in ("sqlite", "memory"):
        problem = store_problem(kind, {"10.0.0.1", "10.0.0.2"})
        assert problem is not None and "RUN_STORE_URL" in problem and "2 hosts" in problem


def test_an_actor_placed_by_spread_asks_for_a_trace_of_cpu_and_the_others_for_none():
    """Ray spreads an actor over the nodes only if it asks for some resource (measured: with none,
    3 coordinators shared 2 of 3 nodes in 3 of 4 tries); the node failure check needs them spread."""
    from actors.names import SPREAD_CPUS, named_actor_options, on_node

    assert 0 < named_actor_options("c", "", "SPREAD")["num_cpus"] == SPREAD_CPUS < 0.01
    assert named_actor_options("s", "", on_node("ab" * 28))["num_cpus"] == 0
    assert named_actor_options("x")["num_cpus"] == 0

"""Every benchmark module imports: benchmarks do not run in CI, so a name one of them takes from
another (or from the code) that went away would otherwise break it unnoticed."""

import importlib
import pkgutil

import pytest

import bench

MODULES = sorted(module.name for module in pkgutil.iter_modules(bench.__path__))


def test_the_benchmarks_are_all_found():
    assert {"bench_peer", "bench_llm_service", "token_cpu", "run_all"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_a_benchmark_module_imports(name):
    importlib.import_module(f"bench.{name}")

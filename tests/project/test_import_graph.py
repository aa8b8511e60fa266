"""The shape of the code: no import cycles between modules, and a core that stays light.

The layer rules themselves are `lint-imports` contracts (pyproject.toml), run by run_tests.sh.
"""

import json
import subprocess
import sys

import grimp

from engine.graph import cyclic_components

PACKAGES = ("actors", "web", "runtime", "elements", "services", "engine")
HEAVY = ("boto3", "botocore", "aptos_sdk", "RestrictedPython", "ray", "psutil")


def module_graph(*packages: str) -> dict[str, list[str]]:
    graph = grimp.build_graph(*packages, cache_dir=None)
    modules = sorted(graph.modules)
    return {m: sorted(graph.find_modules_directly_imported_by(m) & graph.modules) for m in modules}


def test_no_module_imports_itself_through_others():
    cycles = cyclic_components(module_graph(*PACKAGES))
    assert cycles == [], f"import cycles: {cycles}"


def test_the_cycle_finder_sees_a_cycle():
    assert cyclic_components({"a": ["b"], "b": ["c"], "c": ["a"], "d": []}) == [["a", "b", "c"]]


def loaded_after_importing(*modules: str) -> list[str]:
    code = (
        "import sys, json\n"
        + "".join(f"import {m}\n" for m in modules)
        + f"print(json.dumps(sorted({{n.split('.')[0] for n in sys.modules}} & set({list(HEAVY)!r}))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def test_the_scheduler_validation_and_plan_load_no_sdk_and_no_ray():
    assert loaded_after_importing("engine.scheduler", "engine.validation", "engine.plan") == []


def test_the_check_sees_a_heavy_import():
    assert "boto3" in loaded_after_importing("services.bedrock")

"""custom_code: validation (switch, compile errors with line), limits, runs through the engine;
values nested too deeply end in a clean element_error."""

import time

import psutil
import pytest

from elements.custom_code import CustomCodeConfig, CustomCodeElement
from engine.errors import ElementError
from engine.limits import MAX_VALUE_DEPTH
from engine.settings import Settings
from services.hub import ServiceHub
from tests.element_helpers import make_ctx, make_element
from tests.engine_doubles import assert_well_formed, flow, run_local, validate_request
from tests.fixtures.sandbox import busy_runs


def code_flow(code, **extra):
    return flow(
        {"s": {"type": "start"}, "c": {"type": "custom_code", "code": code, **extra}, "e": {"type": "end"}},
        [("s", "c"), ("c", "e")],
        inputs={"n": 20},
    )


def test_disabled_by_the_environment_is_a_422_problem():
    result = validate_request(code_flow("outputs = {}"), Settings(_env_file=None, allow_custom_code=False))
    assert not result.ok
    assert [(p.path, p.message) for p in result.errors] == [
        ("flow_definition.elements.c.type", "custom code is disabled on this server (ALLOW_CUSTOM_CODE=false)")
    ]


def test_compile_errors_are_reported_before_the_flow_starts_with_the_line():
    settings = Settings(_env_file=None)
    (problem,) = validate_request(code_flow("def main(inputs):\n    x = (\n"), settings).errors
    assert problem.path == "flow_definition.elements.c.code"
    assert "Line 2" in problem.message and "does not compile" in problem.message
    (problem,) = validate_request(code_flow("import os\nx = os.__dict__"), settings).errors
    assert "Line 2" in problem.message and "__dict__" in problem.message
    assert validate_request(code_flow("def main(inputs):\n    return {}"), settings).ok


def test_missing_code_is_a_config_problem():
    body = flow({"s": {"type": "start"}, "c": {"type": "custom_code"}}, [("s", "c")])
    (problem,) = validate_request(body, Settings(_env_file=None)).errors
    assert problem.path.startswith("flow_definition.elements.c")


def test_limits_default_to_and_are_capped_by_the_settings():
    settings = Settings(_env_file=None, custom_code_max_memory_mb=64, custom_code_max_cpu_seconds=3)
    definition = code_flow("outputs = {}")["flow_definition"]["elements"]["c"]
    from engine.models import ElementDefinition

    def limits(**config):
        element = CustomCodeElement(ElementDefinition.model_validate({**definition, "element_id": "c"}), None)
        element.config = CustomCodeConfig(code="outputs = {}", **config)
        return element.limits(settings)

    assert limits() == {"memory_mb": 64, "cpu_seconds": 3, "timeout": 8.0}
    assert limits(memory_mb=32, cpu_seconds=2, timeout_seconds=1.5) == {
        "memory_mb": 32,
        "cpu_seconds": 2,
        "timeout": 1.5,
    }
    assert limits(memory_mb=4096, cpu_seconds=600) == {"memory_mb": 64, "cpu_seconds": 3, "timeout": 8.0}


async def test_runs_in_the_sandbox_through_the_engine(sandbox):
    settings = Settings(_env_file=None)
    hub = ServiceHub(settings, sandbox=sandbox)
    code = "def main(inputs):\n    print('working')\n    return {'double': inputs['n'] * 2}"
    snapshot, events = await run_local(code_flow(code), settings, hub)
    assert_well_formed(events)
    assert snapshot["outputs"] == {"double": 40, "printed": "working\n"}


async def test_the_hub_builds_an_in_process_sandbox_by_default():
    hub = ServiceHub(Settings(_env_file=None))
    try:
        snapshot, _ = await run_local(code_flow("def main(inputs):\n    return {'n': inputs['n'] + 1}"), None, hub)
        assert snapshot["outputs"] == {"n": 21}
    finally:
        await hub.aclose()


async def test_a_forbidden_operation_is_an_element_error(sandbox):
    settings = Settings(_env_file=None)
    hub = ServiceHub(settings, sandbox=sandbox)
    snapshot, events = await run_local(code_flow("import socket\noutputs = {}"), settings, hub)
    (error,) = [e for e in events if e.type == "element_error"]
    assert error.data["error_type"] == "forbidden" and "socket" in error.data["message"]
    assert snapshot["status"] == "failed"


async def test_element_timeout_kills_a_busy_process(sandbox):
    settings = Settings(_env_file=None)
    hub = ServiceHub(settings, sandbox=sandbox)
    await sandbox.start()
    server = psutil.Process(sandbox.server_pid)
    t0 = time.monotonic()
    snapshot, _ = await run_local(code_flow("while True:\n    pass", timeout=0.5), settings, hub)
    assert time.monotonic() - t0 < 8  # its CPU limit alone would stop it only after 10 s
    assert snapshot["elements"]["c"]["error"]["error_type"] == "timeout"
    deadline = time.monotonic() + 10
    while busy_runs(server.pid):  # the busy run is killed; only idle spares remain
        assert time.monotonic() < deadline, busy_runs(server.pid)
        time.sleep(0.05)


DEEP_OUTPUT = "def main(inputs):\n    v = 'canary-secret-4567'\n    for _ in range({levels}):\n        v = [v]\n    return {{'v': v}}"


@pytest.mark.parametrize("levels", [1_200, 5_000])
async def test_outputs_nested_too_deeply_are_a_clean_element_error(sandbox, levels):
    settings = Settings(_env_file=None, api_key="canary-secret-4567")  # a secret: the redactor walks events
    hub = ServiceHub(settings, sandbox=sandbox)
    snapshot, events = await run_local(code_flow(DEEP_OUTPUT.format(levels=levels)), settings, hub)
    assert_well_formed(events)
    (error,) = [e for e in events if e.type == "element_error"]
    # 1,200 levels reach the client (output_invalid); 5,000 the child may already refuse to encode
    expected = {"output_invalid"} if levels < 1_500 else {"output_invalid", "code_error"}
    assert error.element_id == "c" and error.data["error_type"] in expected and error.data["message"]
    assert snapshot["status"] == "failed"
    assert snapshot["error"] == {"element_id": "c", **{k: error.data[k] for k in ("error_type", "message")}}
    assert "canary-secret-4567" not in repr([e.model_dump() for e in events])


async def test_inputs_nested_too_deeply_are_refused_before_the_sandbox(sandbox):
    """Requests are depth-checked at validation; values made inside a flow (an LLM's JSON) are not."""
    deep = 0
    for _ in range(MAX_VALUE_DEPTH + 5):
        deep = [deep]
    element = make_element("custom_code", code="outputs = {}")
    ctx = make_ctx()
    ctx.services = ServiceHub(ctx.settings, sandbox=sandbox)
    with pytest.raises(ElementError) as raised:
        await element.execute({"v": deep}, ctx)
    assert raised.value.error_type == "input_invalid"
    assert f"inputs of custom code are nested more than {MAX_VALUE_DEPTH}" in raised.value.message
    assert sandbox.server_pid is None

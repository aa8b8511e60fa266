"""custom_code: validation (switch, compile errors with line) and a run through the engine."""

from engine.local import run_local
from engine.settings import Settings
from engine.validation import validate_request
from tests.engine_doubles import assert_well_formed, flow


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
    result = validate_request(code_flow("def main(inputs):\n    x = (\n"), Settings(_env_file=None))
    (problem,) = result.errors
    assert problem.path == "flow_definition.elements.c.code"
    assert "Line 2" in problem.message
    result = validate_request(code_flow("import os\nx = os.__dict__"), Settings(_env_file=None))
    assert "Line 2" in result.errors[0].message and "_" in result.errors[0].message


async def test_runs_in_the_sandbox_through_the_engine(sandbox):
    from services.hub import ServiceHub

    settings = Settings(_env_file=None)
    hub = ServiceHub(settings, overrides={"sandbox": sandbox})
    code = "def main(inputs):\n    print('working')\n    return {'double': inputs['n'] * 2}"
    snapshot, events = await run_local(code_flow(code), settings, hub)
    assert_well_formed(events)
    assert snapshot["outputs"] == {"double": 40, "printed": "working\n"}


async def test_element_timeout_kills_a_busy_process(sandbox):
    import time

    from services.hub import ServiceHub

    settings = Settings(_env_file=None)
    hub = ServiceHub(settings, overrides={"sandbox": sandbox})
    await sandbox.start()
    t0 = time.monotonic()
    snapshot, events = await run_local(code_flow("while True:\n    pass", timeout=0.5), settings, hub)
    assert time.monotonic() - t0 < 1.5
    assert snapshot["elements"]["c"]["error"]["error_type"] == "timeout"

"""Error branches: `on_error: "default"` with `default_outputs`, and the error port
(`from_output: "error"`), in the scheduler, in validation and when a run resumes. No Ray."""

from engine.settings import Settings
from tests.engine.test_resume import Store, run_durably
from tests.engine_doubles import flow, run_local, validate_request

SETTINGS = Settings()


def with_default(outputs={"v": 0}, element="test_fail"):  # noqa: B006 - never mutated
    return flow(
        {
            "s": {"type": "start"},
            "x": {
                "type": element,
                "on_error": "default",
                "default_outputs": outputs,
                "output_schema": {"v": {"type": "number"}},
            },
            "e": {"type": "end"},
        },
        [("s", "x"), ("x", "e")],
    )


def with_error_port(element="test_fail", **x):
    """x's error port → handler; x's outputs → normal; both → e."""
    return flow(
        {
            "s": {"type": "start"},
            "x": {"type": element, **x},
            "normal": {"type": "test_echo", "value": "normal"},
            "handler": {"type": "test_echo", "value": "handled"},
            "e": {"type": "end"},
        },
        [("s", "x"), ("x", "normal"), ("x", "handler", "error", "problem"), ("normal", "e"), ("handler", "e")],
        inputs={"q": 1},
    )


async def test_on_error_default_reports_the_error_and_goes_on_with_the_default_outputs():
    snapshot, events = await run_local(with_default())
    assert snapshot["status"] == "completed" and snapshot["outputs"] == {"v": 0}
    error = [e for e in events if e.type == "element_error"][0]
    assert error.element_id == "x" and error.data["error_type"] == "test_failure"
    assert snapshot["elements"]["x"]["state"] == "failed"


async def test_the_error_port_carries_the_error_and_the_other_connections_are_skipped():
    snapshot, _ = await run_local(with_error_port())
    assert snapshot["status"] == "completed", snapshot["error"]
    states = {eid: el["state"] for eid, el in snapshot["elements"].items()}
    assert states["normal"] == "skipped" and states["handler"] == "completed" and states["x"] == "failed"
    assert snapshot["outputs"]["problem"] == {
        "error_type": "test_failure",
        "message": "boom: this element always fails",
    }
    assert snapshot["outputs"]["echo"] == "handled"


async def test_the_error_port_is_skipped_when_the_element_succeeds():
    snapshot, _ = await run_local(with_error_port(element="test_echo"))
    states = {eid: el["state"] for eid, el in snapshot["elements"].items()}
    assert snapshot["status"] == "completed" and states["handler"] == "skipped" and states["normal"] == "completed"
    assert "problem" not in snapshot["outputs"]


async def test_a_resumed_run_takes_the_error_route_of_a_failure_it_finds_checkpointed():
    store = Store()
    await run_durably(with_error_port(), store)
    cut = store.cut(next(i for i, e in enumerate(store.events) if e.type == "element_error") + 1)
    await run_durably(with_error_port(), cut, cut.resume())
    assert cut.events[-1].data["status"] == "completed"
    assert [e.element_id for e in cut.events if e.type == "element_started"].count("x") == 1  # not run again


def problems(body):
    return {p.path: p.message for p in validate_request(body, SETTINGS).problems}


def test_validation_of_error_routes():
    assert problems(with_default()) == {}
    assert problems(with_error_port(output_schema={"only": {"type": "string"}})) == {}  # the error port always exists
    missing = with_default()
    del missing["flow_definition"]["elements"]["x"]["default_outputs"]
    assert "required" in problems(missing)["flow_definition.elements.x.default_outputs"]
    assert "must be number" in problems(with_default({"v": "zero"}))["flow_definition.elements.x.default_outputs"]
    stray = with_error_port(default_outputs={"v": 1})
    assert "only with on_error" in problems(stray)["flow_definition.elements.x.default_outputs"]

"""The published JSON Schemas (`web.json_schemas`, served by `web.schema_routes`) hold to what
the service really accepts and sends; docs/asyncapi.yaml is the one the code gives.

- Flows: every example matches `flow_schema`; a setting of the wrong type (at the top level, in
  `config`, inside a sub-flow) or an unknown element type is refused, as the service refuses
  it; the branches are the registry's types, a new class included; and, element by element
  (every JSON example of the element pages and the examples), the schema and the service
  (`validate_request`) agree on unknown keys, on settings moved into `config`, on a required
  setting missing, and on a setting of the wrong type.
- Events: the events of flows run in-process — the examples (with the fake Bedrock), an
  iteration whose items fail and skip branches (`scope`), a failing flow, a pause and its
  resume: every event type — match `events_schema` after `Event.to_message()` and the
  outbox's JSON encoding, and the AsyncAPI payload of their message; so do the degraded forms
  (`fit_event`'s markers and envelope-only events, the outbox's `serialization_failed` stub).
- The fake Backend 2 reports a message that does not match.
"""

import copy
import json
import re
import time
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from jsonschema import Draft7Validator, Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7
from websockets.sync.client import connect

from actors.event_forwarder import encode_each
from engine.contracts import EVENT_DATA
from engine.event_log import fit_event
from engine.models import ElementDefinition, Event
from engine.scheduler import Resume
from engine.settings import Settings
from runtime.catalog import builtin_registry
from tests.engine.test_pause import approval
from tests.engine.test_pause import run as run_durable
from tests.engine.test_resume import Store
from tests.engine_doubles import TEST_REGISTRY, run_local, validate_request
from tests.fakes.backend2 import FakeBackend2
from tests.nesting_flows import around, sub
from tests.project.docs_scripts import docs_script
from tests.schema_checks import event_branch_validators, event_problems, events_validator, flow_problems, problems
from web import schema_routes
from web.json_schemas import asyncapi_document, events_schema, flow_schema

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
SETTINGS = Settings()


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def service_accepts(body: dict) -> bool:
    return validate_request(body, SETTINGS).ok


# -- flows ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_every_example_matches_the_flow_schema(path):
    assert service_accepts(load(path))
    assert flow_problems(load(path)) == []


def test_the_documents_are_valid_json_schema_2020_12():
    for schema in (
        flow_schema(builtin_registry()),
        flow_schema(TEST_REGISTRY),
        events_schema(),
        events_schema(TEST_REGISTRY),
    ):
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def branch_types(schema: dict) -> list[str]:
    union = schema["$defs"]["ElementDefinition"]["oneOf"]
    return [schema["$defs"][ref["$ref"].removeprefix("#/$defs/")]["properties"]["type"]["const"] for ref in union]


def test_the_element_branches_are_the_registry_types_and_a_new_class_appears_by_itself():
    assert branch_types(flow_schema(builtin_registry())) == builtin_registry().known_types()
    assert branch_types(flow_schema(TEST_REGISTRY)) == TEST_REGISTRY.known_types()
    echo = around({"type": "test_echo", "seconds": 0.01})
    assert flow_problems(echo, TEST_REGISTRY) == [] and flow_problems(echo) != []
    slow = around({"type": "test_echo", "seconds": "slow"})
    assert flow_problems(slow, TEST_REGISTRY) == [
        "$.flow_definition.elements.n.seconds: 'slow' is not of type 'number'"
    ]


def test_sub_flows_refer_to_the_same_element_union():
    definitions = flow_schema(builtin_registry())["$defs"]
    assert definitions["FlowGraph"]["properties"]["elements"]["additionalProperties"] == {
        "$ref": "#/$defs/ElementDefinition"
    }
    assert definitions["FlowDefinition"]["properties"]["elements"]["additionalProperties"] == {
        "$ref": "#/$defs/ElementDefinition"
    }
    for holder in ("iteration", "loop", "sub_flow"):
        assert definitions[f"element.{holder}"]["properties"]["flow"] == {"$ref": "#/$defs/FlowGraph"}


def seed_with(**llm_changes) -> dict:
    body = load(ROOT / "examples" / "seed_llm.json")
    body["flow_definition"]["elements"]["llm-1"].update(llm_changes)
    return body


def iteration_with(**inner_llm_changes) -> dict:
    body = load(ROOT / "examples" / "iteration_llm.json")
    body["flow_definition"]["elements"]["each"]["flow"]["elements"]["summarise"].update(inner_llm_changes)
    return body


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (seed_with(temperature="hot"), "$.flow_definition.elements['llm-1'].temperature"),
        (seed_with(config={"temperature": "hot"}), "$.flow_definition.elements['llm-1'].config.temperature"),
        (iteration_with(max_tokens="many"), "$.flow_definition.elements.each.flow.elements.summarise.max_tokens"),
        (seed_with(type="llm_txt"), "$.flow_definition.elements['llm-1']"),
    ],
    ids=["top-level setting", "setting in config", "setting inside a sub-flow", "unknown type"],
)
def test_a_setting_of_the_wrong_type_or_an_unknown_type_is_refused_as_by_the_service(body, path):
    assert not service_accepts(body)
    found = flow_problems(body)
    assert len(found) == 1 and found[0].startswith(path + ":"), found


def loop_flow(**settings) -> dict:
    inner = sub({"s": {"type": "start"}, "end": {"type": "end"}}, [("s", "end")])
    return around({"type": "loop", **settings} | ({} if "config" in settings else {"flow": inner}))


@pytest.mark.parametrize(
    "settings",
    [
        {"max_iterations": 2},
        {"config": {"max_iterations": 2, "flow": sub({"s": {"type": "start"}, "e": {"type": "end"}}, [("s", "e")])}},
        {},
        {"config": {"max_iterations": 2}},
        {"max_iterations": 0},
        {"max_iterations": 2, "config": {"max_iterations": 0}},
        {"max_iterations": 2, "config": {"until": None, "unknown": 1}},
    ],
    ids=["top level", "in config", "missing", "flow missing", "too small", "too small in config", "unknown in config"],
)
def test_a_required_setting_may_be_given_in_either_place(settings):
    body = loop_flow(**settings)
    assert (flow_problems(body) == []) == service_accepts(body)


# Element by element: the schema and the service agree (the JSON examples of the element pages
# and of examples/ are the elements; each runs alone in start → element → end).

TRIVIAL_FLOW = sub({"s": {"type": "start"}, "e": {"type": "end"}}, [("s", "e")])
HOLDERS = [  # the nesting page shows no complete example of these two
    {
        "type": "loop",
        "element_id": "refine",
        "max_iterations": 3,
        "until": {"conditions": [{"field": "iteration", "operator": ">=", "value": 1}]},
        "flow": TRIVIAL_FLOW,
    },
    {"type": "sub_flow", "element_id": "inner", "flow": TRIVIAL_FLOW},
]


def documented_elements() -> list[dict]:
    found = list(HOLDERS)
    for page in sorted((ROOT / "docs" / "elements").glob("*.md")):
        for block in re.findall(r"```json\n(.*?)```", page.read_text(), re.S):
            if "…" not in block:
                try:
                    found += list(elements_in(json.loads(block)))
                except ValueError:  # several JSON values in one block (an event stream)
                    continue
    for path in EXAMPLES:
        found += list(elements_in(load(path)["flow_definition"]))
    known = set(builtin_registry().known_types())
    return [element for element in found if element.get("type") in known]


def elements_in(value) -> list[dict]:
    """Element definitions in a JSON value: one itself, or those of its `elements` (and theirs)."""
    if not isinstance(value, dict):
        return []
    if "type" in value and "element_id" in value:
        inner = value.get("flow") or value.get("config", {}).get("flow") or {}
        return [value, *elements_in(inner)]
    return [item for element in (value.get("elements") or {}).values() for item in elements_in(element)]


def alone(element: dict) -> dict:
    return around({**copy.deepcopy(element), "element_id": "n"})


def settings_of(element: dict) -> dict:
    return {key: value for key, value in element.items() if key not in ElementDefinition.model_fields}


ELEMENTS = [element for element in documented_elements() if service_accepts(alone(element))]


def test_the_agreement_checks_cover_every_element_type():
    missing = sorted(set(builtin_registry().known_types()) - {element["type"] for element in ELEMENTS})
    assert missing == [], "give each a complete JSON example (one the service accepts) on its page in docs/elements/"


@pytest.mark.parametrize("element", ELEMENTS, ids=lambda element: element["type"])
def test_schema_and_service_agree_element_by_element(element):
    def agree(changed: dict) -> None:
        body = alone(changed)
        assert (flow_problems(body) == []) == service_accepts(body), (changed, flow_problems(body))

    assert flow_problems(alone(element)) == []
    agree({**element, "zz_unknown": 1})  # refused by both when the type's Config forbids extras
    agree({**element, "position": {"x": 10, "y": 20}})  # not a common field of ElementDefinition
    agree({**element, "config": {**element.get("config", {}), "zz_unknown": 1}})
    settings = settings_of(element)
    moved = {key: value for key, value in element.items() if key not in settings}
    agree({**moved, "config": {**settings, **element.get("config", {})}})  # settings in config only
    fields = builtin_registry().get(element["type"]).Config.model_fields
    required = [name for name, field in fields.items() if field.is_required()]
    for key in settings:
        agree({**element, key: {"zz": "an object where it takes none"}})  # the setting's type
        without = alone({name: value for name, value in element.items() if name != key})
        if service_accepts(without):  # else a rule across settings may refuse it: the service's
            assert flow_problems(without) == [], key
        assert (flow_problems(without) != []) == (key in required), key


# -- events ---------------------------------------------------------------------------------------


def on_the_wire(event: Event) -> dict:
    """The event as Backend 2 gets it: `to_message()`, then the outbox's JSON encoding."""
    [encoded] = encode_each(event.flow_id, [event.to_message()])
    return json.loads(encoded)


ASYNCAPI = asyncapi_document(TEST_REGISTRY)
ASYNCAPI_REFS = Registry().with_resource("urn:asyncapi", Resource(contents=ASYNCAPI, specification=DRAFT7))


def assert_matches(message: dict, expected_branch: str) -> None:
    """Valid under the events schema (whole, and by the fast path of `event_problems`), as the
    branch expected, and under the AsyncAPI payload of that message (draft 07)."""
    assert problems(events_validator(TEST_REGISTRY), message) == []
    assert event_problems(message, TEST_REGISTRY) == []
    own = event_branch_validators(TEST_REGISTRY).get(message["type"])
    assert own.is_valid(message) == (expected_branch == message["type"])
    payload = {"$ref": f"urn:asyncapi#/components/messages/{expected_branch}/payload"}
    assert list(Draft7Validator(payload, registry=ASYNCAPI_REFS).iter_errors(message)) == []


@pytest.fixture
async def example_events(bedrock_hub, bedrock_server) -> list[Event]:
    bedrock_server.script_text(["Fine, ", "thanks ", "for ", "asking."])
    events = []
    for path in EXAMPLES:
        snapshot, produced = await run_local(load(path), bedrock_hub.settings, bedrock_hub)
        assert snapshot["status"] == "completed", (path.name, snapshot)
        events += produced
    return events


def failing_items() -> dict:
    """An iteration whose item 1 fails (its result kept as null) and whose others skip that branch."""
    body = sub(
        {
            "s": {"type": "start"},
            "c": {
                "type": "case",
                "cases": [{"id": "odd", "conditions": [{"field": "index", "operator": "==", "value": 1}]}],
            },
            "bad": {"type": "test_fail"},
            "end": {"type": "end"},
        },
        [("s", "c"), ("c", "bad", "odd"), ("c", "end", "default"), ("bad", "end")],
    )
    return around({"type": "iteration", "on_item_error": "continue", "flow": body}, {"items": ["a", "b", "c"]})


async def paused_and_resumed() -> list[Event]:
    store = Store()
    await run_durable(approval(), store)
    resume = Resume(store.checkpoints, store.events[-1].seq, answers={"w": {"approved": True}})
    await run_durable(approval(), store, resume)
    return store.events


async def test_the_events_of_flows_run_in_process_match_the_events_schema(example_events):
    _, nested_events = await run_local(failing_items())
    snapshot, failing_events = await run_local(around({"type": "test_fail"}))
    assert snapshot["status"] == "failed"
    events = example_events + nested_events + failing_events + await paused_and_resumed()
    for event in events:
        assert_matches(on_the_wire(event), event.type)
    assert {event.type for event in events} == set(EVENT_DATA)  # every event type was checked
    assert any(event.scope and event.type == "llm_chunk" for event in events)
    assert any(event.scope and event.type == "element_error" for event in events)
    assert any(event.scope and event.type == "element_skipped" for event in events)


def event(type_: str, data: dict, element_id: str | None = "n", **envelope) -> dict:
    made = Event(
        type=type_, flow_id="f-1", seq=7, timestamp="2026-01-01T00:00:00.000Z", element_id=element_id, data=data
    )
    return made.model_copy(update=envelope).to_message()


class Unprintable:
    def __str__(self):
        raise RuntimeError("no text for this one")


def test_the_degraded_forms_of_events_match_the_events_schema():
    scope = [{"element_id": "each", "index": 3}]
    big = "x" * 200_000
    too_large = [
        event("element_completed", {"outputs": {"blob": big, "note": "kept"}, "duration_ms": 1.0}),
        event("llm_chunk", {"chunk": big, "index": 0}, scope=scope),
        event("element_error", {"error_type": "x", "message": big, "attempts": 1, "duration_ms": None}),
        event(
            "flow_completed",
            {"status": "failed", "outputs": {}, "error": {"error_type": "x", "message": big}, "duration_ms": 2.0},
            None,
        ),
    ]
    for original in too_large:
        message, _size, truncated = fit_event(original, 10_000, 1_000)
        assert truncated and message.get("scope") == original.get("scope")
        assert_matches(json.loads(json.dumps(message)), message["type"])
    circular: dict = {}
    circular["self"] = circular
    envelope_only = [
        fit_event(
            event("element_started", {"type": "test_echo", "name": "n", "inputs": {}}, element_id="e" * 50_000),
            10_000,
            1_000,
        )[0],
        fit_event(event("element_completed", {"outputs": circular, "duration_ms": 1.0}, scope=scope), 10_000, 1_000)[0],
    ]
    for message in envelope_only:
        assert message["data"]["error"]["error_type"] == "event_too_large"
        assert_matches(json.loads(json.dumps(message)), "event_too_large")
    for message in (
        event("element_completed", {"outputs": {"x": Unprintable()}, "duration_ms": 1.0}, scope=scope),
        event("flow_started", {"start_element_id": Unprintable(), "elements": 3}, None),
        event(
            "flow_completed",
            {"status": "failed", "outputs": {"x": Unprintable()}, "error": None, "duration_ms": 1.0},
            None,
        ),
    ):
        [encoded] = encode_each("f-1", [message])
        stub = json.loads(encoded)
        assert stub["data"]["error"]["error_type"] == "serialization_failed"
        assert_matches(stub, "serialization_failed")


def test_an_event_data_shape_never_fits_a_degraded_one():
    """Why a message valid under its own type's branch is valid under the whole `oneOf`."""
    definitions = events_schema()["$defs"]
    degraded_keys = set(definitions["EventTooLargeData"]["properties"]) | set(
        definitions["SerializationFailedData"]["properties"]
    )
    for event_type in EVENT_DATA:
        data = definitions[definitions[f"event.{event_type}"]["properties"]["data"]["$ref"].removeprefix("#/$defs/")]
        assert not set(data["required"]) <= degraded_keys, event_type


def test_a_message_that_does_not_match_is_named():
    wrong = {
        "type": "llm_chunk",
        "flow_id": "f",
        "seq": 0,
        "timestamp": "t",
        "element_id": "n",
        "data": {"chunk": 1, "index": 0},
    }
    assert event_problems(wrong) == [
        "$.seq: 0 is less than the minimum of 1",
        "$.data.chunk: 1 is not valid under any of the given schemas",
    ]
    assert event_problems({**wrong, "type": "llm_chunks"}) != []


# -- routes, AsyncAPI file, fake Backend 2 --------------------------------------------------------


async def test_the_routes_answer_the_documents_built_once():
    app = FastAPI()
    app.include_router(schema_routes.router)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        flow = await client.get("/schemas/flow")
        events = await client.get("/schemas/events")
        again = await client.get("/schemas/flow")
    assert flow.status_code == events.status_code == 200
    assert flow.headers["content-type"] == "application/json"
    assert flow.json() == flow_schema(builtin_registry())
    assert events.json() == events_schema(builtin_registry())
    assert again.content == flow.content and schema_routes.flow_schema_text.cache_info().hits >= 1


def asyncapi_script():
    return docs_script("asyncapi")


def test_docs_asyncapi_yaml_is_up_to_date():
    assert asyncapi_script().main(["--check"]) == 0, "run .venv/bin/python docs/asyncapi.py"


def test_the_fake_backend2_reports_messages_that_do_not_match():
    server = FakeBackend2().start()
    try:
        good = event("llm_chunk", {"chunk": "a", "index": 0})
        with connect(server.url("ws/check")) as connection:
            connection.send(json.dumps(good))
            connection.send(json.dumps({**good, "seq": 8, "data": {"chunk": "b"}}))
        deadline = time.monotonic() + 5
        while len(server.messages("ws/check")) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.schema_violations == ["/ws/check seq 8: $.data: 'index' is a required property"]
        assert server.take_schema_violations() and server.schema_violations == []
        with connect(server.url("ws/check")) as connection:
            connection.send(json.dumps({"not": "an event"}))
        deadline = time.monotonic() + 5
        while len(server.messages("ws/check")) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.skip_unchecked()
        assert server.schema_violations == []
    finally:
        server.shutdown()

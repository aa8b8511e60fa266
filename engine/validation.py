"""Validation of an `/execute` request before anything runs.

Contract: `validate_request(body, settings)` never raises on bad input. It returns every
problem it finds, each with a JSON path (`flow_definition.connections[2].to_id`) and a plain
message: body not JSON, wrong or missing fields, Backend 2 URL not ws(s):// or not allowed,
element key different from its element_id, unknown type (naming the known ones), bad
type-specific config (each element class's own model and `check`), dangling connections,
unknown ports where they are declared, the start element missing or fed by a connection,
cycles (with their path). Elements unreachable from the start are warnings. When there are no
errors it also returns the `FlowPlan` to run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import ValidationError

import elements  # noqa: F401 — registers the built-in element types
from elements import registry
from elements.base import ElementBase
from engine.models import ExecuteRequest, FlowDefinition
from engine.plan import FlowPlan
from engine.settings import Settings

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message, "severity": self.severity}


@dataclass
class Validation:
    request: ExecuteRequest | None = None
    plan: FlowPlan | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return self.plan is not None and not self.errors


def json_path(*parts: str | int) -> str:
    """`("flow_definition", "elements", "llm-1", "temperature")` → `flow_definition.elements.llm-1.temperature`."""
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _IDENTIFIER.match(part):
            path += f".{part}" if path else part
        else:
            path += f"[{json.dumps(part, ensure_ascii=False)}]"
    return path or "$"


def _pydantic_problems(error: ValidationError, *prefix: str | int) -> list[Problem]:
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        message = item["msg"].removeprefix("Value error, ")
        problems.append(Problem(json_path(*prefix, *item["loc"]), message))
    return problems


def validate_request(body: bytes | str | Any, settings: Settings) -> Validation:
    if isinstance(body, bytes | str):
        try:
            body = json.loads(body)
        except (ValueError, RecursionError) as exc:
            return Validation(problems=[Problem("$", f"the body is not valid JSON: {exc}")])
    if not isinstance(body, dict):
        return Validation(problems=[Problem("$", "the body must be a JSON object")])
    result = Validation()
    try:
        result.request = ExecuteRequest.model_validate(body)
    except ValidationError as exc:
        result.problems += _pydantic_problems(exc)
    except RecursionError:
        result.problems.append(Problem("$", "the body is nested too deeply"))
    definition = result.request.flow_definition if result.request else _definition_alone(body)
    if result.request is not None:
        result.problems += _check_backend2_url(result.request.backend2_ws_url, settings)
        if result.request.flow_id != definition.flow_id:
            result.problems.append(Problem("flow_definition.flow_id", f"must equal flow_id '{result.request.flow_id}'"))
    if definition is not None:
        instances, problems = _check_graph(definition, settings)
        result.problems += problems
        if result.request is not None and not result.errors:
            result.plan = FlowPlan.build(definition, instances)
    return result


def _definition_alone(body: dict[str, Any]) -> FlowDefinition | None:
    """The flow definition, when it is valid although other parts of the request are not."""
    try:
        return FlowDefinition.model_validate(body.get("flow_definition"))
    except (ValidationError, RecursionError):
        return None


def _check_backend2_url(url: str, settings: Settings) -> list[Problem]:
    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError as exc:
        return [Problem("backend2_ws_url", f"is not a valid URL: {exc}")]
    if not host:
        return [Problem("backend2_ws_url", "has no host")]
    allowed = settings.allowed_hosts()
    if allowed and host not in allowed:
        return [Problem("backend2_ws_url", f"host '{host}' is not in BACKEND2_ALLOWED_HOSTS")]
    return []


def _check_graph(definition: FlowDefinition, settings: Settings) -> tuple[dict[str, ElementBase], list[Problem]]:
    instances, problems = _check_elements(definition, settings)
    problems += _check_connections(definition, instances)
    start = definition.start_element_id
    if start not in definition.elements:
        problems.append(Problem("flow_definition.start_element_id", f"no element '{start}' in elements"))
    problems += _check_cycles(definition)
    if start in definition.elements:
        problems += _check_reachability(definition)
    return instances, problems


def _check_elements(definition: FlowDefinition, settings: Settings) -> tuple[dict[str, ElementBase], list[Problem]]:
    instances: dict[str, ElementBase] = {}
    problems: list[Problem] = []
    for key, element in definition.elements.items():
        base = ("flow_definition", "elements", key)
        if element.element_id != key:
            problems.append(Problem(json_path(*base, "element_id"), f"must equal its key '{key}'"))
        cls = registry.get(element.type)
        if cls is None:
            known = ", ".join(registry.known_types())
            problems.append(Problem(json_path(*base, "type"), f"unknown element type '{element.type}'; known: {known}"))
            continue
        try:
            config = cls.parse_config(element)
        except ValidationError as exc:
            problems += _config_problems(exc, element.config, base)
            continue
        for sub_path, message in cls.check(element, config, settings):
            problems.append(Problem(json_path(*base, *sub_path.split(".")) if sub_path else json_path(*base), message))
        instances[key] = cls(element, config)
    return instances, problems


def _config_problems(error: ValidationError, nested: dict[str, Any], base: tuple[str, ...]) -> list[Problem]:
    problems = []
    for problem in _pydantic_problems(error):
        head = problem.path.split(".")[0].split("[")[0]
        prefix = (*base, "config") if head in nested else base
        problems.append(
            Problem(json_path(*prefix) + ("" if problem.path == "$" else "." + problem.path), problem.message)
        )
    return problems


def _check_connections(definition: FlowDefinition, instances: dict[str, ElementBase]) -> list[Problem]:
    problems = []
    start = definition.start_element_id
    for index, conn in enumerate(definition.connections):
        base = ("flow_definition", "connections", index)
        for end in ("from_id", "to_id"):
            target = getattr(conn, end)
            if target not in definition.elements:
                problems.append(Problem(json_path(*base, end), f"no element '{target}' (dangling connection)"))
        if conn.to_id == start:
            problems.append(Problem(json_path(*base, "to_id"), f"the start element '{start}' cannot have inputs"))
        source = instances.get(conn.from_id)
        ports = source.output_ports() if source else None
        if conn.from_output is not None and ports is not None and conn.from_output not in ports:
            known = ", ".join(sorted(ports)) or "none"
            problems.append(
                Problem(
                    json_path(*base, "from_output"),
                    f"'{conn.from_id}' has no output '{conn.from_output}'; known: {known}",
                )
            )
        target_def = definition.elements.get(conn.to_id)
        declared = target_def.input_schema if target_def else {}
        if conn.to_input is not None and declared and conn.to_input not in declared:
            known = ", ".join(declared)
            problems.append(
                Problem(json_path(*base, "to_input"), f"'{conn.to_id}' has no input '{conn.to_input}'; known: {known}")
            )
    return problems


def _adjacency(definition: FlowDefinition) -> dict[str, list[str]]:
    graph: dict[str, list[str]] = {key: [] for key in definition.elements}
    for conn in definition.connections:
        if conn.from_id in graph and conn.to_id in graph:
            graph[conn.from_id].append(conn.to_id)
    return graph


def _check_cycles(definition: FlowDefinition) -> list[Problem]:
    """Iterative depth-first search (graphs of 10,000 elements must not hit the recursion limit)."""
    graph = _adjacency(definition)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    problems: list[Problem] = []
    for root in graph:
        if root in state:
            continue
        path = [root]
        state[root] = 1
        stack = [iter(graph[root])]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                problems.append(Problem("flow_definition.connections", "cycle: " + " → ".join(cycle)))
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(graph[nxt]))
    return problems


def _check_reachability(definition: FlowDefinition) -> list[Problem]:
    graph = _adjacency(definition)
    seen = {definition.start_element_id}
    frontier = [definition.start_element_id]
    while frontier:
        for nxt in graph[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    return [
        Problem(json_path("flow_definition", "elements", key), "is not reachable from the start element", "warning")
        for key in definition.elements
        if key not in seen
    ]

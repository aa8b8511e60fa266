"""Validation of an `/execute` request before anything runs.

Contract: `validate_request(body, settings)` never raises, whatever it is given (any bytes,
any text, any JSON-like value, nested 100,000 deep or not). It returns the problems it finds,
each with a JSON path (`flow_definition.connections[2].to_id`) and a plain message, and, when
there are no errors, the `FlowPlan` to run. In this order:

1. Reading: a body that is not JSON, not an object, or nested too deeply for the JSON reader
   is one problem at `$`.
2. Shape limits, before any per-element work (a request over them gets only these problems):
   more than `MAX_FLOW_ELEMENTS` elements or `MAX_FLOW_CONNECTIONS` connections (one problem
   each, at `flow_definition.elements` / `.connections`); a free-form value nested deeper than
   `engine.limits.MAX_VALUE_DEPTH` (100) levels, at its own path. Free-form values are the
   keys of `initial_inputs` (the `initial_inputs` object itself counts as one level, as an
   element's inputs do), every field of an element and every key of its `config` (data,
   defaults, schemas, cases …), each connection, the execution `config` and any other key.
   The depth is measured without recursion before pydantic or anything else walks the value.
3. Ids (`engine.models.id_problem`): element keys, the `id` of a connection when given, port
   names (`input_schema` / `output_schema` keys) and branch names here; `flow_id`,
   `element_id`, connection ends and ports by the models.
4. Fields and types (pydantic); the Backend 2 URL (`backend2_ws_url_problem`: ws(s) only, a
   host, no user information, no fragment, no control characters or spaces, a port from 1 to
   65535 — whatever the `websockets` client would refuse — then `BACKEND2_ALLOWED_HOSTS`).
5. The graph: element key equal to its element_id, unknown type (the known types are listed
   in the first such problem only), bad type-specific config (each element class's own model
   and `check`), dangling connections, unknown ports where they are declared (at most 10
   known names listed), the start element missing or fed by a connection, cycles — one
   problem per strongly connected component, naming a shortest cycle through it by its first
   5 elements and its length. Elements unreachable from the start are warnings.

Bounded answers (`bound_problems`): errors come before warnings; at most
`MAX_REPORTED_PROBLEMS` problems are kept, each message cut to `MAX_MESSAGE_CHARS` and each
path to `MAX_PATH_CHARS` characters with non-printable characters escaped (`\\x1b`), and the
kept problems together stay under `MAX_PROBLEMS_BYTES` of JSON; a final problem at `$` says
`… and 1,234 more problems`. Messages quote a request value only when it is a valid id
(`engine.models.shown`); paths show a key only when it is one (`[<key not shown>]`).
Cost is linear in the size of the body: a 5 MB body is answered in about a second or two.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import ValidationError
from websockets.exceptions import InvalidURI
from websockets.uri import parse_uri

from engine.contracts import ProblemInfo
from engine.destinations import DestinationError, OutboundPolicy, parse_ws_url
from engine.element import ERROR_PORT, AnyElement
from engine.graph import adjacency, cyclic_components, reachable, shortest_cycle
from engine.limits import MAX_VALUE_DEPTH, depth_exceeds
from engine.models import ElementDefinition, ExecuteRequest, FlowDefinition, FlowGraph, id_problem, shown
from engine.plan import FlowPlan
from engine.port_check import check_ports
from engine.registry import ElementRegistry
from engine.settings import Settings

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")

MAX_MESSAGE_CHARS = 300
MAX_PATH_CHARS = 300
MAX_PROBLEMS_BYTES = 48 * 1024  # the JSON of the kept problems; a 422 body stays under 64 KB
MAX_PROBLEMS_CEILING = 1000  # the most `MAX_REPORTED_PROBLEMS` may be set to
MAX_NAMES_LISTED = 10  # known port names listed in one message
CYCLE_ELEMENTS_SHOWN = 5
TOO_DEEP = f"is nested deeper than {MAX_VALUE_DEPTH} levels"
HIDDEN_KEY = "<key not shown>"


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def as_dict(self) -> ProblemInfo:
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
    """`("flow_definition", "elements", "llm-1", "temperature")` → `flow_definition.elements.llm-1.temperature`.

    A key that is not a valid id (too long, control characters …) is shown as `[<key not shown>]`.
    """
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not isinstance(part, str) or id_problem(part) is not None:
            path += f"[{HIDDEN_KEY}]"
        elif _IDENTIFIER.match(part):
            path += f".{part}" if path else part
        else:
            path += f"[{json.dumps(part, ensure_ascii=False)}]"
    return path or "$"


def validate_request(body: bytes | str | Any, settings: Settings, registry: ElementRegistry) -> Validation:
    """Every problem of an `/execute` body; the plan when it has no errors (types from `registry`)."""
    try:
        result = _validate(body, settings, registry)
    except RecursionError:  # a guard: the depth limits are checked before anything recurses
        result = Validation(problems=[Problem("$", f"the body {TOO_DEEP}")])
    result.problems = bound_problems(result.problems, settings.max_reported_problems)
    return result


def _validate(body: bytes | str | Any, settings: Settings, registry: ElementRegistry) -> Validation:
    if isinstance(body, bytes | bytearray | str):
        try:
            body = json.loads(body)
        except RecursionError:
            return Validation(problems=[Problem("$", f"the body {TOO_DEEP} (too deep to read)")])
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an int over 4,300 digits: none quotes the body
            return Validation(problems=[Problem("$", f"the body is not valid JSON: {exc}")])
    if not isinstance(body, dict):
        return Validation(problems=[Problem("$", "the body must be a JSON object")])
    shape = _shape_problems(body, settings)
    if shape:
        return Validation(problems=shape)
    definition_body = body.get("flow_definition")
    result = Validation(problems=_key_problems(definition_body, ("flow_definition",)))
    try:
        result.request = ExecuteRequest.model_validate(body)
    except ValidationError as exc:
        result.problems += _pydantic_problems(exc)
    if result.request is None:
        definition = _definition_alone(body)
    else:
        definition = result.request.flow_definition
        result.problems += _check_backend2_url(result.request.backend2_ws_url, settings)
        if result.request.flow_id != definition.flow_id:
            result.problems.append(
                Problem("flow_definition.flow_id", f"must equal flow_id {shown(result.request.flow_id)}")
            )
    if definition is not None:
        graph = _GraphCheck(settings, registry)
        instances, sub_plans = graph.check(definition, ("flow_definition",), 0, definition.flow_id)
        result.problems += graph.problems
        if result.request is not None and not result.errors:
            result.plan = FlowPlan.build(definition.flow_id, definition, instances, sub_plans)
    return result


# --- bounded answers ---------------------------------------------------------------------------


def bound_problems(problems: list[Problem], limit: int, max_bytes: int = MAX_PROBLEMS_BYTES) -> list[Problem]:
    """Errors first, then warnings; at most `limit` problems and `max_bytes` of JSON, each cut
    and escaped, plus a final `… and N more problems` when any were left out."""
    ordered = [p for p in problems if p.severity == "error"] + [p for p in problems if p.severity != "error"]
    kept: list[Problem] = []
    used = 0
    for problem in ordered[:limit]:
        safe = Problem(_clip(problem.path, MAX_PATH_CHARS), _clip(problem.message, MAX_MESSAGE_CHARS), problem.severity)
        size = len(json.dumps(safe.as_dict()))  # ASCII-escaped: the largest the JSON of it can be
        if used + size > max_bytes:
            break
        kept.append(safe)
        used += size
    left_out = ordered[len(kept) :]
    if left_out:
        severity: Literal["error", "warning"] = "error" if left_out[0].severity == "error" else "warning"
        noun = "problem" if len(left_out) == 1 else "problems"
        kept.append(Problem("$", f"… and {len(left_out):,} more {noun}", severity))
    return kept


def printable(text: str) -> str:
    """`text` with every non-printable character escaped (`\\x1b`, `\\u202e`)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode() for c in text)


def _clip(text: str, limit: int) -> str:
    text = printable(text[: limit * 2] if len(text) > limit * 2 else text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _names(names: Iterable[str]) -> str:
    """`a, b, c` — at most `MAX_NAMES_LISTED` names, then `… (1,234 in all)`."""
    listed = list(names)
    if not listed:
        return "none"
    head = ", ".join(n if id_problem(n) is None else "(a name not shown)" for n in listed[:MAX_NAMES_LISTED])
    return head if len(listed) <= MAX_NAMES_LISTED else f"{head}, … ({len(listed):,} in all)"


# --- shape limits and keys, on the raw JSON -----------------------------------------------------


def _shape_problems(body: dict[str, Any], settings: Settings) -> list[Problem]:
    """Counts, then nesting depth of every free-form value; before pydantic sees anything."""
    definition = body.get("flow_definition")
    problems = []
    if isinstance(definition, dict):
        element_defs = definition.get("elements")
        connections = definition.get("connections")
        if isinstance(element_defs, dict) and len(element_defs) > settings.max_flow_elements:
            problems.append(
                Problem(
                    "flow_definition.elements",
                    f"has {len(element_defs):,} elements; at most {settings.max_flow_elements:,} are allowed "
                    "(MAX_FLOW_ELEMENTS)",
                )
            )
        if isinstance(connections, list) and len(connections) > settings.max_flow_connections:
            problems.append(
                Problem(
                    "flow_definition.connections",
                    f"has {len(connections):,} connections; at most {settings.max_flow_connections:,} are allowed "
                    "(MAX_FLOW_CONNECTIONS)",
                )
            )
    if problems or not _too_deep(body, _BODY_DEPTH):
        return problems
    return [Problem(json_path(*path), TOO_DEEP) for path, value, limit in _free_values(body) if _too_deep(value, limit)]


# Every free-form value sits at least one level below the body with a limit of at most
# MAX_VALUE_DEPTH (`initial_inputs` keys: two levels, MAX_VALUE_DEPTH - 1), so a body no deeper
# than this holds no value over its limit: one walk decides for every ordinary request.
_BODY_DEPTH = MAX_VALUE_DEPTH + 1


def _too_deep(value: Any, limit: int) -> bool:
    if not isinstance(value, dict | list | tuple):
        return False
    try:
        return depth_exceeds(value, limit)
    except TypeError:  # not JSON-like (a set, bytes …): pydantic reports it
        return False


def _free_values(body: dict[str, Any]) -> Iterable[tuple[tuple[str | int, ...], Any, int]]:
    """`(path, value, depth limit)` of every free-form value of a request."""
    for key, value in body.items():
        if key == "flow_definition" and isinstance(value, dict):
            yield from _definition_values(value)
        elif key == "initial_inputs" and isinstance(value, dict):
            for name, item in value.items():
                yield (key, name), item, MAX_VALUE_DEPTH - 1
        else:
            yield (key,), value, MAX_VALUE_DEPTH


def _definition_values(definition: dict[str, Any]) -> Iterable[tuple[tuple[str | int, ...], Any, int]]:
    base = "flow_definition"
    for key, value in definition.items():
        if key == "elements" and isinstance(value, dict):
            for element_key, element in value.items():
                if not isinstance(element, dict):
                    yield (base, key, element_key), element, MAX_VALUE_DEPTH
                    continue
                for name, setting in element.items():
                    if name == "config" and isinstance(setting, dict):
                        for sub, item in setting.items():
                            yield (base, key, element_key, name, sub), item, MAX_VALUE_DEPTH
                    else:
                        yield (base, key, element_key, name), setting, MAX_VALUE_DEPTH
        elif key == "connections" and isinstance(value, list):
            for index, conn in enumerate(value):
                yield (base, key, index), conn, MAX_VALUE_DEPTH
        else:
            yield (base, key), value, MAX_VALUE_DEPTH


def _key_problems(definition: Any, base: tuple[str | int, ...]) -> list[Problem]:
    """Element keys, connection ids and port names of a flow definition (or an inline sub-flow,
    at `base`): ids, by their position (never quoted)."""
    if not isinstance(definition, dict):
        return []
    problems = []
    element_defs = definition.get("elements")
    if isinstance(element_defs, dict):
        for position, (key, element) in enumerate(element_defs.items(), start=1):
            problem = id_problem(key)
            if problem is not None:
                problems.append(Problem(json_path(*base, "elements"), f"element key #{position} {problem}"))
            if not isinstance(element, dict):
                continue
            for schema in ("input_schema", "output_schema"):
                ports = element.get(schema)
                if not isinstance(ports, dict):
                    continue
                for port_position, port in enumerate(ports, start=1):
                    problem = id_problem(port)
                    if problem is not None:
                        path = json_path(*base, "elements", key, schema)
                        problems.append(Problem(path, f"port name #{port_position} {problem}"))
    connections = definition.get("connections")
    if isinstance(connections, list):
        for index, conn in enumerate(connections):
            if isinstance(conn, dict) and "id" in conn:
                problem = id_problem(conn["id"])
                if problem is not None:
                    problems.append(Problem(json_path(*base, "connections", index, "id"), problem))
    return problems


# --- fields and types ---------------------------------------------------------------------------


def _pydantic_problems(error: ValidationError, *prefix: str | int) -> list[Problem]:
    problems = []
    for item in error.errors(include_url=False, include_input=False, include_context=False):
        message = item["msg"].removeprefix("Value error, ")
        problems.append(Problem(json_path(*prefix, *item["loc"]), message))
    return problems


def _definition_alone(body: dict[str, Any]) -> FlowDefinition | None:
    """The flow definition, when it is valid although other parts of the request are not."""
    try:
        return FlowDefinition.model_validate(body.get("flow_definition"))
    except (ValidationError, RecursionError):
        return None


def backend2_ws_url_problem(url: str) -> str | None:
    """Why the `websockets` client would refuse `url` (or we do), without quoting it; or None."""
    if not url.isprintable() or " " in url:
        return "contains a control character, a space or another invisible character"
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:
        return "is not a valid URL (its host cannot be read)"
    if parts.scheme not in ("ws", "wss"):
        return "must start with ws:// or wss://"
    if "@" in parts.netloc:
        return "must not contain user information (user@)"
    if "#" in url:
        return "must not have a fragment (#…)"
    if not hostname:
        return "has no host"
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        return "has a port that is not a number from 1 to 65535"
    try:
        parse_uri(url)
    except InvalidURI as exc:
        return f"is not a valid WebSocket URL: {exc.msg}"
    except (ValueError, UnicodeError):
        return "is not a valid WebSocket URL (its host cannot be encoded)"
    return None


def _check_backend2_url(url: str, settings: Settings) -> list[Problem]:
    problem = backend2_ws_url_problem(url)
    if problem is not None:
        return [Problem("backend2_ws_url", problem)]
    try:  # the outbound policy as far as it can be judged before resolving (the streamer re-checks)
        refused = OutboundPolicy.from_settings(settings).check_url(parse_ws_url(url))
    except DestinationError as exc:
        refused = str(exc)
    if refused is not None:
        return [
            Problem("backend2_ws_url", "is not a destination this service may connect to (see BACKEND2_ALLOWED_HOSTS)")
        ]
    return []


# --- the graph ----------------------------------------------------------------------------------

Path = tuple[str | int, ...]


class _GraphCheck:
    """The graph checks of a flow and, recursively, of the inline sub-flows of its elements
    (`ElementBase.inner_flow`), each at its own JSON path; collects the problems, counts the
    elements of every level against `MAX_FLOW_ELEMENTS` and the nesting against `MAX_FLOW_DEPTH`."""

    def __init__(self, settings: Settings, registry: ElementRegistry):
        self.settings = settings
        self.registry = registry
        self.problems: list[Problem] = []
        self.types_listed_at: str | None = None
        self.element_count = 0
        self.connection_count = 0

    def check(
        self, definition: FlowGraph, base: Path, depth: int, flow_id: str
    ) -> tuple[dict[str, AnyElement], dict[str, FlowPlan]]:
        """The element instances and the sub-flows' plans of the graph at `base` (`depth`: how
        many sub-flows it is nested in); its problems are added to `self.problems`."""
        self.element_count += len(definition.elements)
        self.connection_count += len(definition.connections)
        instances, sub_plans = self._check_elements(definition, base, depth, flow_id)
        self.problems += _check_connections(definition, instances, base)
        start = definition.start_element_id
        if start not in definition.elements:
            self.problems.append(
                Problem(json_path(*base, "start_element_id"), f"no element {shown(start)} in elements")
            )
        self.problems += _check_cycles(definition, base)
        if start in definition.elements:
            self.problems += _check_reachability(definition, base)
        if depth > 0:
            self.problems += _sub_flow_problems(definition, instances, base)
        return instances, sub_plans

    def _check_elements(
        self, definition: FlowGraph, base: Path, depth: int, flow_id: str
    ) -> tuple[dict[str, AnyElement], dict[str, FlowPlan]]:
        instances: dict[str, AnyElement] = {}
        sub_plans: dict[str, FlowPlan] = {}
        for key, element in definition.elements.items():
            where = (*base, "elements", key)
            if element.element_id != key:
                self.problems.append(Problem(json_path(*where, "element_id"), f"must equal its key {shown(key)}"))
            instance = self._instance(element, where)
            if instance is None:
                continue
            if depth > 0 and instance.waits:
                self.problems.append(
                    Problem(
                        json_path(*where, "type"),
                        f"{shown(instance.type_name)} cannot be inside a sub-flow: a run pauses and resumes at "
                        "the elements of the flow itself; put it before or after the element that runs the sub-flow",
                    )
                )
            inner = instance.inner_flow()
            if inner is not None:
                plan = self._check_sub_flow(inner, element, where, depth, flow_id)
                if plan is not None:
                    sub_plans[key] = plan
            instances[key] = instance
        return instances, sub_plans

    def _instance(self, element: ElementDefinition, where: Path) -> AnyElement | None:
        cls = self.registry.get(element.type)
        if cls is None:
            path = json_path(*where, "type")
            if self.types_listed_at is None:
                self.types_listed_at = path
                known = f"known: {', '.join(self.registry.known_types())}"
            else:
                known = f"the known types are listed at {self.types_listed_at}"
            self.problems.append(Problem(path, f"unknown element type {shown(element.type)}; {known}"))
            return None
        try:
            instance = cls.from_definition(element)
        except ValidationError as exc:
            self.problems += _config_problems(exc, element.config, where)
            return None
        for sub_path, message in instance.check(self.settings):
            path = json_path(*where, *sub_path.split(".")) if sub_path else json_path(*where)
            self.problems.append(Problem(path, message))
        self.problems += _branch_problems(instance, where)
        self.problems += _default_output_problems(element, where)
        return instance

    def _check_sub_flow(
        self, inner: FlowGraph, element: ElementDefinition, where: Path, depth: int, flow_id: str
    ) -> FlowPlan | None:
        """The plan of an element's inline sub-flow, or None when it has problems."""
        at = (*where, "config", "flow") if "flow" in element.config else (*where, "flow")
        limit = self.settings.max_flow_depth
        if depth + 1 > limit:
            message = f"sub-flows are nested more than {limit} levels deep (MAX_FLOW_DEPTH)"
            self.problems.append(Problem(json_path(*at), message))
            return None
        if self.element_count + len(inner.elements) > self.settings.max_flow_elements:
            total = self.element_count + len(inner.elements)
            message = (
                f"the flow and its sub-flows have {total:,} elements; at most "
                f"{self.settings.max_flow_elements:,} are allowed in all (MAX_FLOW_ELEMENTS)"
            )
            self.problems.append(Problem(json_path(*at, "elements"), message))
            return None
        if self.connection_count + len(inner.connections) > self.settings.max_flow_connections:
            message = (
                f"the flow and its sub-flows have more than {self.settings.max_flow_connections:,} connections "
                "in all (MAX_FLOW_CONNECTIONS)"
            )
            self.problems.append(Problem(json_path(*at, "connections"), message))
            return None
        raw = element.settings().get("flow")
        self.problems += _key_problems(raw, at)
        before = len(self.errors_so_far())
        instances, sub_plans = self.check(inner, at, depth + 1, flow_id)
        if len(self.errors_so_far()) > before:
            return None
        return FlowPlan.build(flow_id, inner, instances, sub_plans)

    def errors_so_far(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


def _sub_flow_problems(definition: FlowGraph, instances: dict[str, AnyElement], base: Path) -> list[Problem]:
    """A sub-flow has one start (the only `start` element there is) and at least one end."""
    problems = []
    starts = [key for key, element in instances.items() if element.type_name == "start"]
    others = [key for key in starts if key != definition.start_element_id]
    if others:
        problems.append(
            Problem(
                json_path(*base, "elements", others[0]),
                f"a sub-flow has exactly one start: {shown(definition.start_element_id)} is its start_element_id",
            )
        )
    if instances and not any(element.is_output for element in instances.values()):
        problems.append(
            Problem(json_path(*base, "elements"), "a sub-flow needs an end element: its outputs are the sub-flow's")
        )
    return problems


def _default_output_problems(element: ElementDefinition, base: Path) -> list[Problem]:
    """`on_error: "default"` needs `default_outputs`, which must fit `output_schema`."""
    path = json_path(*base, "default_outputs")
    if element.on_error != "default":
        if element.default_outputs is not None:
            return [Problem(path, 'is used only with on_error: "default"')]
        return []
    if element.default_outputs is None:
        return [Problem(path, 'is required with on_error: "default" (the outputs the flow goes on with)')]
    return [Problem(path, message) for message in check_ports(element.default_outputs, element.output_schema)]


def _branch_problems(instance: AnyElement, base: Path) -> list[Problem]:
    """Branch names of a routing element are ids too; found at their place in its settings."""
    if not instance.routes:
        return []
    problems = []
    settings = instance.definition.settings()
    for name in sorted(instance.branch_ports()):
        problem = id_problem(name)
        if problem is None:
            continue
        where = _find_string(settings, name)
        prefix = (*base, "config") if where and where[0] in instance.definition.config else base
        problems.append(Problem(json_path(*prefix, *where), f"branch name {problem}"))
    return problems


def _find_string(value: Any, wanted: str, depth: int = 3) -> tuple[str | int, ...]:
    """Path of the first string equal to `wanted` within `depth` levels of `value`, else `()`."""
    queue: deque[tuple[tuple[str | int, ...], Any]] = deque([((), value)])
    while queue:
        path, item = queue.popleft()
        if item == wanted:
            return path
        if len(path) >= depth:
            continue
        if isinstance(item, dict):
            queue.extend(((*path, k), v) for k, v in item.items() if isinstance(k, str))
        elif isinstance(item, list):
            queue.extend(((*path, i), v) for i, v in enumerate(item))
    return ()


def _config_problems(error: ValidationError, nested: dict[str, Any], base: Path) -> list[Problem]:
    problems = []
    for item in error.errors(include_url=False, include_input=False, include_context=False):
        loc = item["loc"]
        prefix = (*base, "config") if loc and loc[0] in nested else base
        problems.append(Problem(json_path(*prefix, *loc), item["msg"].removeprefix("Value error, ")))
    return problems


def _check_connections(definition: FlowGraph, instances: dict[str, AnyElement], graph_path: Path) -> list[Problem]:
    problems = []
    start = definition.start_element_id
    outputs_known: dict[str, str] = {}
    inputs_known: dict[str, str] = {}
    for index, conn in enumerate(definition.connections):
        base = (*graph_path, "connections", index)
        for end in ("from_id", "to_id"):
            target = getattr(conn, end)
            if target not in definition.elements:
                problems.append(Problem(json_path(*base, end), f"no element {shown(target)} (dangling connection)"))
        if conn.to_id == start:
            problems.append(Problem(json_path(*base, "to_id"), f"the start element {shown(start)} cannot have inputs"))
        source = instances.get(conn.from_id)
        ports = source.output_ports() if source else None
        error_port = conn.from_output == ERROR_PORT  # every element has it: taken when the element fails
        if conn.from_output is not None and ports is not None and conn.from_output not in ports and not error_port:
            if conn.from_id not in outputs_known:
                outputs_known[conn.from_id] = _names(sorted(ports))
            problems.append(
                Problem(
                    json_path(*base, "from_output"),
                    f"{shown(conn.from_id)} has no output {shown(conn.from_output)}; "
                    f"known: {outputs_known[conn.from_id]}",
                )
            )
        target_def = definition.elements.get(conn.to_id)
        target = instances.get(conn.to_id)
        resumes = target is not None and target.waits  # its input_schema is what a resume supplies
        declared = target_def.input_schema if target_def and not resumes else {}
        if conn.to_input is not None and declared and conn.to_input not in declared:
            if conn.to_id not in inputs_known:
                inputs_known[conn.to_id] = _names(declared)
            problems.append(
                Problem(
                    json_path(*base, "to_input"),
                    f"{shown(conn.to_id)} has no input {shown(conn.to_input)}; known: {inputs_known[conn.to_id]}",
                )
            )
    return problems


def _check_cycles(definition: FlowGraph, base: Path) -> list[Problem]:
    """One problem per strongly connected component that holds a cycle (iterative: no recursion)."""
    graph = adjacency(definition)
    problems = []
    for component in cyclic_components(graph):
        cycle = shortest_cycle(graph, component)
        shown_ids = [shown(eid).strip("'") for eid in cycle]
        length = len(cycle) - 1
        if length > CYCLE_ELEMENTS_SHOWN:
            text = " → ".join(shown_ids[:CYCLE_ELEMENTS_SHOWN]) + f" → … ({length:,} elements)"
        else:
            text = " → ".join(shown_ids)
        if len(component) > length:
            text += f"; {len(component):,} elements in all are on cycles through one another"
        problems.append(Problem(json_path(*base, "connections"), f"cycle: {text}"))
    return problems


def _check_reachability(definition: FlowGraph, base: Path) -> list[Problem]:
    seen = reachable(adjacency(definition), definition.start_element_id)
    return [
        Problem(json_path(*base, "elements", key), "is not reachable from the start element", "warning")
        for key in definition.elements
        if key not in seen
    ]

"""A seeded generator of malformed `/execute` bodies (bytes), for fuzzing validation and HTTP.

Kinds: not JSON, wrong JSON types, missing fields, huge strings, deep nesting (of the inputs,
of element config, past what `json` can read), graphs of 10,000 elements (over
`MAX_FLOW_ELEMENTS`), cycles, ids with control / bidi / line-separator characters or over 128
characters, dangling connections, bad ports, bad element config, bad URLs (wrong scheme, user
information, fragment, port 0, control characters), wrong number types. Every body it yields
is invalid by construction.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Iterator
from typing import Any


def valid_body(flow_id: str = "fuzz") -> dict[str, Any]:
    return {
        "flow_id": flow_id,
        "flow_definition": {
            "flow_id": flow_id,
            "elements": {
                "s": {"type": "start", "element_id": "s"},
                "e": {"type": "end", "element_id": "e"},
            },
            "connections": [{"from_id": "s", "to_id": "e"}],
            "start_element_id": "s",
        },
        "initial_inputs": {"x": 1},
        "backend2_ws_url": "ws://127.0.0.1:9/ws",
        "config": {"max_execution_time": 5},
    }


def _junk(rng: random.Random) -> Any:
    return rng.choice([None, 0, -1, 1.5, True, "", "x" * rng.randint(1, 50), [], {}, [1, "a"], {"k": [None]}])


def _drop_required(body, rng):
    path = rng.choice(
        [
            ("flow_id",),
            ("flow_definition",),
            ("backend2_ws_url",),
            ("flow_definition", "elements"),
            ("flow_definition", "start_element_id"),
            ("flow_definition", "flow_id"),
            ("flow_definition", "elements", "s", "type"),
            ("flow_definition", "connections", 0, "to_id"),
        ]
    )
    target = body
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return body


def _wrong_type(body, rng):
    path = rng.choice(
        [
            ("flow_id",),
            ("flow_definition",),
            ("initial_inputs",),
            ("config",),
            ("backend2_ws_url",),
            ("flow_definition", "elements"),
            ("flow_definition", "connections"),
            ("config", "max_execution_time"),
            ("flow_definition", "elements", "s"),
        ]
    )
    target = body
    for key in path[:-1]:
        target = target[key]
    bad = _junk(rng)
    current = target[path[-1]]
    while (isinstance(bad, type(current)) and not isinstance(bad, bool)) or (
        isinstance(current, int | float) and isinstance(bad, int | float)  # True is a valid number 1
    ):
        bad = _junk(rng)
    target[path[-1]] = bad if bad != target[path[-1]] else None
    return body


def _huge_string(body, rng):
    body[rng.choice(["flow_id", "backend2_ws_url"])] = "ws://" + "a" * rng.randint(3000, 200_000)
    return body


def _deep_nesting(body, rng):
    nested: list = []
    for _ in range(rng.randint(200, 5000)):
        nested = [nested]
    body["initial_inputs"] = nested if rng.random() < 0.5 else None
    body["flow_definition"]["elements"]["s"]["type"] = {"nested": body["initial_inputs"]}
    return body


def _deep_config(body, rng):
    nested: dict = {}
    for _ in range(rng.randint(101, 900)):
        nested = {"k": nested}
    body["flow_definition"]["elements"]["d"] = {"type": "data_block", "element_id": "d", "data": nested}
    body["flow_definition"]["connections"].append({"from_id": "s", "to_id": "d"})
    return body


def _huge_graph_with_problem(body, rng):
    n = 10_000
    elements = {f"n{i}": {"type": "start" if i == 0 else "end", "element_id": f"n{i}"} for i in range(n)}
    connections = [{"from_id": f"n{i}", "to_id": f"n{i + 1}"} for i in range(n - 1)]
    connections.append({"from_id": f"n{n - 1}", "to_id": f"n{rng.randint(1, n - 2)}"})  # a cycle
    body["flow_definition"].update(elements=elements, connections=connections, start_element_id="n0")
    return body


def _cycle(body, rng):
    body["flow_definition"]["elements"]["m"] = {"type": "merger", "element_id": "m"}
    body["flow_definition"]["connections"] += [{"from_id": "e", "to_id": "m"}, {"from_id": "m", "to_id": "e"}]
    return body


def _unicode_ids(body, rng):
    odd = rng.choice(
        [
            "é",
            "流程",
            "🙂",
            "a\u0000b",
            "\u202e",
            " ",
            "a/b",
            "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
            "\x1b[2J",
            "a\x1cb",
            "a\u2028b",
            "a\u2066b",
            "k" * 200,
        ]
    )
    body["flow_definition"]["elements"][odd] = {"type": "nope-" + odd, "element_id": odd}
    body["flow_definition"]["connections"].append({"from_id": odd, "to_id": "ghost" + odd})
    return body


def _dangling(body, rng):
    body["flow_definition"]["connections"].append({"from_id": "s", "to_id": f"missing-{rng.randint(0, 99)}"})
    return body


def _bad_start(body, rng):
    body["flow_definition"]["start_element_id"] = rng.choice(["", "nowhere", "e"]) or "nowhere"
    if body["flow_definition"]["start_element_id"] == "e":
        body["flow_definition"]["connections"].append({"from_id": "s", "to_id": "e"})
    return body


def _unknown_type(body, rng):
    body["flow_definition"]["elements"]["s"]["type"] = rng.choice(["strat", "LLM_TEXT", "x" * 100, "end "])
    return body


def _bad_url(body, rng):
    body["backend2_ws_url"] = rng.choice(
        [
            "http://x",
            "ftp://x",
            "ws//x",
            "",
            "ws://",
            "javascript:alert(1)",
            "wss://[::1",
            "ws://user@127.0.0.1:9/ws",
            "ws://127.0.0.1:9/ws#f",
            "ws://127.0.0.1:0/ws",
            "ws://127.0.0.1:9/ws\x1b[2J",
            "ws://127.0.0.1:9/a b",
        ]
    )
    return body


def _bad_config(body, rng):
    body["config"]["max_execution_time"] = rng.choice([-1, 0, "ten", None, 1e12, [5]])
    return body


def _bad_element_config(body, rng):
    body["flow_definition"]["elements"]["x"] = {
        "type": "case",
        "element_id": "x",
        "cases": rng.choice(["nope", [{"conditions": "x"}], 5]),
        "timeout": rng.choice([-5, "soon"]),
        "on_error": rng.choice(["maybe", 3]),
    }
    body["flow_definition"]["connections"].append({"from_id": "s", "to_id": "x"})
    return body


def _mismatched_flow_id(body, rng):
    body["flow_definition"]["flow_id"] = body["flow_id"] + "-other"
    return body


MUTATIONS: list[Callable[[dict, random.Random], dict]] = [
    _drop_required,
    _wrong_type,
    _huge_string,
    _deep_nesting,
    _deep_config,
    _cycle,
    _unicode_ids,
    _dangling,
    _bad_start,
    _unknown_type,
    _bad_url,
    _bad_config,
    _bad_element_config,
    _mismatched_flow_id,
]

_NOT_JSON = [
    b"",
    b"{",
    b"null",
    b"[]",
    b"42",
    b'"text"',
    b"\xff\xfe\x00",
    b"{'single': 'quotes'}",
    b"NaN",
    b'{"flow_id": "x",}',
    b"<xml/>",
]


def malformed_bodies(count: int, seed: int = 1234, huge_graphs: int = 3) -> Iterator[bytes]:
    rng = random.Random(seed)
    for i in range(count):
        if i < huge_graphs:
            yield json.dumps(_huge_graph_with_problem(valid_body(f"fuzz-{i}"), rng)).encode()
            continue
        if rng.random() < 0.08:
            yield rng.choice(_NOT_JSON)
            continue
        body = copy.deepcopy(valid_body(f"fuzz-{i}"))
        for mutate in rng.sample(MUTATIONS, rng.randint(1, 3)):
            try:
                body = mutate(body, rng)
            except (KeyError, TypeError, IndexError, AttributeError):
                continue  # an earlier mutation removed what this one edits: still invalid
        try:
            yield json.dumps(body, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
        except (RecursionError, ValueError):
            yield b'{"deep": ' + b"[" * 10000 + b"]" * 10000 + b"}"

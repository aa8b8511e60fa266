"""Facts about a directed graph of element ids, computed without recursion.

Contract: a graph is `{node: [successor, …]}` in definition order (every successor is a key).
`adjacency(definition)` builds it from a flow's connections (dangling ends left out);
`reachable(graph, start)` is the set of nodes reachable from `start`, itself included;
`cyclic_components(graph)` the strongly connected components that hold a cycle, each in
definition order, ordered by their first node; `shortest_cycle(graph, component)` a shortest
cycle through the component's first node, as `[first, …, first]`. Validation and `FlowPlan`
both use these: a graph fact has one definition.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Mapping, Sequence

from engine.models import FlowGraph


def adjacency(definition: FlowGraph) -> dict[str, list[str]]:
    graph: dict[str, list[str]] = {key: [] for key in definition.elements}
    for conn in definition.connections:
        if conn.from_id in graph and conn.to_id in graph:
            graph[conn.from_id].append(conn.to_id)
    return graph


def reachable[N: Hashable](graph: Mapping[N, Sequence[N]], start: N) -> set[N]:
    seen = {start}
    frontier = [start]
    while frontier:
        for nxt in graph.get(frontier.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    return seen


def cyclic_components[N: Hashable](graph: Mapping[N, Sequence[N]]) -> list[list[N]]:
    """Strongly connected components with a cycle (Tarjan, iterative), each in definition order,
    ordered by their first element in definition order."""
    order = {node: i for i, node in enumerate(graph)}
    index: dict[N, int] = {}
    low: dict[N, int] = {}
    on_stack: set[N] = set()
    stack: list[N] = []
    found: list[list[N]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    found.append(sorted(component, key=order.__getitem__))
    return sorted(found, key=lambda component: order[component[0]])


def shortest_cycle[N: Hashable](graph: Mapping[N, Sequence[N]], component: list[N]) -> list[N]:
    """A shortest cycle through the component's first element, within the component (BFS)."""
    members = set(component)
    root = component[0]
    parent: dict[N, N] = {}
    queue = deque([root])
    while queue:
        node = queue.popleft()
        for child in graph[node]:
            if child == root:
                path = [node]
                while path[-1] != root:
                    path.append(parent[path[-1]])
                return [*reversed(path), root]
            if child in members and child not in parent:
                parent[child] = node
                queue.append(child)
    return [root, root]  # not reached: every member of a cyclic component is on a cycle

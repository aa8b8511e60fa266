"""The sandbox actors: where custom code runs under Ray, one per node, and the client that balances runs over them.

Contract:
- `SandboxActor` is a named async actor per eligible node (`custom-code-sandbox-<node id[:12]>`,
  namespace `flow-executor`, detached, restartable, `num_cpus=0`, high `max_concurrency`),
  pinned to its node (`NodeAffinitySchedulingStrategy(node, soft=False)`), that owns a
  `SandboxClient`, i.e. one single-threaded fork server that forks a resource-limited child per
  run. The Ray worker itself is never forked. Eligible nodes are the alive nodes offering the
  custom resource `SANDBOX_RESOURCE` when it is set (e.g. `sandbox`: user code stays on
  dedicated nodes; the actor then also holds 0.01 of it), else every alive node
  (`sandbox_nodes.eligible_nodes`). Actors are created lazily by the clients, `get_if_exists`,
  so every coordinator shares the one actor of each node. `sandbox_actors()` lists them.
- `SandboxActorClient.run(code, inputs, *, memory_mb, cpu_seconds, timeout, label="")` has the
  signature of `SandboxClient.run`. Each call is an actor task named `label`
  (`flow_id/element_id`) in the Ray dashboard. Errors arrive as the same `ElementError`s;
  cancelling the awaiting coroutine cancels the actor task (`ray.cancel`), whose cancellation
  kills the child.
- Balancing (`sandbox_nodes.SandboxNodes`): a run goes to the node with the fewest runs in
  flight from this client, ties taken in turn. The node set is read from `ray.nodes()` (in a
  thread, one read shared by concurrent callers) at the first run, then at most every
  `REFRESH_SECONDS`, and at once after an actor error: a node added later gets runs, a node gone
  is dropped with its actor handle.
- Failures of a node, and when a run moves: a handle new to this client (first use, or after an
  error) is first probed (`ready`, at most `PROBE_SECONDS`); if that fails, the code never
  started, so the run goes to another node. Once the run has been sent, an actor error
  (`RayActorError`) means the code may have run: the run moves to another node only if a fresh
  read of the node set shows its node gone — a run has no effect outside its own process (no
  network, no files, no processes) and is capped in memory and CPU, so it is safe to run again
  and cannot have taken a node down. If the node is still there, the actor itself died (a crash,
  a kill, the memory monitor), possibly because of this very run: it is not run again, it fails
  with `sandbox_unavailable` (transient, so the element's own `retry`, when the flow sets one,
  decides). A node where an actor error happened is passed over for `REFRESH_SECONDS` while
  another node can take runs, and its actor (restarted) is probed again before its next run. A run moves once at most (two nodes tried); with no node left, or no eligible node at
  all, it fails with `sandbox_unavailable` (transient), naming the resource that is missing.
- `isolation()` is the weakest OS isolation level among the eligible nodes' fork servers
  (`namespaces+seccomp` > `landlock+seccomp` > `restricted-python-only` > `none`; None when one
  is unknown), which `GET /health` reports: it promises no more than the worst node gives.
- `SandboxActorClient(settings)` is the `engine.ports.CodeRunner` the coordinator gives its
  `ServiceHub`; `name` (tests, benchmarks) changes the actors' base name.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import ActorUnschedulableError, RayActorError, RayError, RayTaskError

from actors.names import NAMESPACE, SANDBOX_NAME, named_actor_options, on_node
from actors.ray_types import remote_view
from actors.sandbox_nodes import (
    SandboxNodes,
    eligible_nodes,
    is_sandbox_actor_name,
    no_node_message,
    sandbox_actor_name,
    weakest_isolation,
)
from engine.errors import ElementError
from engine.settings import Settings
from services.sandbox.client import SandboxClient, SandboxError
from services.sandbox.isolation import make_undumpable

log = logging.getLogger(__name__)

PROBE_SECONDS = 60.0  # how long a new handle's actor may take to start before its node is passed over
ATTEMPTS = 2  # nodes a run may try: the first choice and one other


@ray.remote
class SandboxActor:
    def __init__(self) -> None:
        make_undumpable()
        self.client = SandboxClient()
        self.runs = 0

    async def run(self, code: str, inputs: dict[str, Any], limits: dict[str, Any]) -> dict[str, Any]:
        self.runs += 1
        return await self.client.run(code, inputs, **limits)

    async def ready(self) -> str:
        """The probe of a new handle: the id of the node the actor runs on."""
        node_id: str = ray.get_runtime_context().get_node_id()
        return node_id

    async def stats(self) -> dict[str, Any]:
        """Its node and the runs it was given since it started (tests, operators)."""
        return {"node_id": await self.ready(), "runs": self.runs}

    async def isolation(self) -> str | None:
        """Starts the fork server if needed; the OS isolation level it reached (see `isolation`)."""
        await self.client.start()
        return self.client.isolation

    async def server_pid(self) -> int | None:
        """Starts the fork server if needed; its pid (tests look at its children)."""
        await self.client.start()
        return self.client.server_pid


def actor_options(settings: Settings, node_id: str, base: str = SANDBOX_NAME) -> dict[str, Any]:
    return named_actor_options(sandbox_actor_name(base, node_id), settings.sandbox_resource, on_node(node_id))


def sandbox_actors(base: str = SANDBOX_NAME) -> dict[str, Any]:
    """The sandbox actors that exist now (one per node that ran or was asked something), by name."""
    found = {}
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry["namespace"] == NAMESPACE and is_sandbox_actor_name(base, entry["name"]):
            try:
                found[entry["name"]] = ray.get_actor(entry["name"], namespace=NAMESPACE)
            except ValueError:  # gone since it was listed
                continue
    return found


def _unwrap(error: RayTaskError) -> BaseException:
    cause = getattr(error, "cause", None)
    if isinstance(cause, ElementError):
        return cause
    return _unavailable(f"the sandbox failed: {error}")


def _unavailable(message: str) -> SandboxError:
    return SandboxError(message, error_type="sandbox_unavailable", transient=True)


class _Elsewhere(Exception):
    """The run did not happen on this node (never started, or its node left): another may take it."""


class SandboxActorClient:
    def __init__(
        self,
        settings: Settings,
        name: str = SANDBOX_NAME,
        list_nodes: Callable[[], list[dict[str, Any]]] | None = None,  # tests: `ray.nodes` by default
    ):
        self._settings = settings
        self._base = name
        self._resource = settings.sandbox_resource
        self._list_nodes = list_nodes or ray.nodes
        self._nodes = SandboxNodes()
        self._actors: dict[str, Any] = {}  # node id → handle of its sandbox actor
        self._probes: dict[str, Any] = {}  # node id → the new handle's `ready` call
        self._ready: set[str] = set()  # nodes whose current handle answered
        self._reading: asyncio.Task[list[str] | None] | None = None

    async def run(
        self,
        code: str,
        inputs: dict[str, Any],
        *,
        memory_mb: int,
        cpu_seconds: int,
        timeout: float,
        label: str = "",
        **more_limits: Any,  # output_limit, print_limit (tests)
    ) -> dict[str, Any]:
        limits = {"memory_mb": memory_mb, "cpu_seconds": cpu_seconds, "timeout": timeout, **more_limits}
        request = (code, inputs, {**limits, "label": label})  # the label's flow id: fair slots
        tried: list[str] = []
        while True:
            node = await self._choose(tried)
            try:
                return await self._run_on(node, request, label)
            except _Elsewhere as moved:
                tried.append(node)
                log.warning("custom code %s: %s", label or "run", moved)
                if len(tried) >= ATTEMPTS:
                    raise _unavailable(f"the sandbox is unavailable: {moved}") from None

    async def isolation(self) -> str | None:
        """The weakest level among the eligible nodes' sandboxes (starting them if needed)."""
        await self._refresh()
        nodes = list(self._nodes.nodes)
        if not nodes:
            raise _unavailable(no_node_message(self._resource))
        try:
            levels = await asyncio.gather(*(self._handle(node).isolation.remote() for node in nodes))
        except RayError as error:
            raise _unavailable(f"a sandbox did not report its isolation level: {error}") from None
        return weakest_isolation(levels)

    async def actors(self) -> dict[str, Any]:
        """The handles of the eligible nodes' sandbox actors, by node id (creating them if needed)."""
        await self._refresh()
        return {node: self._handle(node) for node in self._nodes.nodes}

    async def _choose(self, tried: list[str]) -> str:
        await self._refresh()
        node = self._nodes.choose(time.monotonic(), exclude=tried)
        if node is not None:
            return node
        if tried:
            raise _unavailable(
                f"the sandbox on node {tried[-1][:12]} is unavailable and no other node can take the run"
            )
        raise _unavailable(no_node_message(self._resource))

    async def _run_on(self, node: str, request: tuple[Any, ...], label: str) -> dict[str, Any]:
        self._nodes.started(node)
        try:
            actor = await self._ready_actor(node)
            method = actor.run.options(name=label) if label else actor.run
            ref = method.remote(*request)
            try:
                outputs: dict[str, Any] = await ref
                return outputs
            except asyncio.CancelledError:
                ray.cancel(ref)
                raise
            except RayTaskError as error:
                raise _unwrap(error) from None
            except (RayActorError, ActorUnschedulableError) as error:
                self._forget(node)
                if await self._node_gone(node):
                    raise _Elsewhere(f"node {node[:12]} left the cluster during the run ({error})") from None
                raise _unavailable(f"the sandbox actor is unavailable: {error}") from None
        finally:
            self._nodes.finished(node)

    async def _ready_actor(self, node: str) -> Any:
        """The node's actor once it has answered a first call; `_Elsewhere` if it does not."""
        try:
            actor = self._handle(node)
            if node not in self._ready:
                probe = self._probes.get(node)
                if probe is None:
                    probe = self._probes[node] = actor.ready.remote()
                await asyncio.wait_for(probe, PROBE_SECONDS)
                self._ready.add(node)
                self._probes.pop(node, None)
            return actor
        except (RayError, ValueError, TimeoutError) as error:
            self._forget(node)
            reason = f"no answer within {PROBE_SECONDS:.0f} s" if isinstance(error, TimeoutError) else str(error)
            raise _Elsewhere(f"the sandbox actor on node {node[:12]} did not start: {reason}") from None

    def _handle(self, node: str) -> Any:
        actor = self._actors.get(node)
        if actor is None:
            options = actor_options(self._settings, node, self._base)
            actor = self._actors[node] = remote_view(SandboxActor).options(**options).remote()
        return actor

    def _forget(self, node: str) -> None:
        """After an error there: passed over for a while, its handle dropped, the nodes read again."""
        self._nodes.failed(node, time.monotonic())
        self._drop_handle(node)

    def _drop_handle(self, node: str) -> None:
        self._actors.pop(node, None)
        self._probes.pop(node, None)
        self._ready.discard(node)

    async def _refresh(self) -> list[str] | None:
        """Reads the node set when it is due (concurrent callers on one event loop share one read);
        the eligible nodes, or None when they could not be read."""
        loop = asyncio.get_running_loop()
        reading = self._reading
        if reading is None or reading.done() or reading.get_loop() is not loop:
            if not self._nodes.refresh_due(time.monotonic()):
                return list(self._nodes.nodes)
            reading = self._reading = loop.create_task(self._read_nodes())
        return await asyncio.shield(reading)

    async def _read_nodes(self) -> list[str] | None:
        try:
            listed = eligible_nodes(await asyncio.to_thread(self._list_nodes), self._resource)
        except Exception as exc:  # the GCS unreachable for a moment: keep the set, read again later
            log.warning("could not list the Ray nodes for the sandbox: %s", exc)
            self._nodes.update(self._nodes.nodes, time.monotonic())
            return None
        for node in self._nodes.update(listed, time.monotonic()):
            self._drop_handle(node)
        return listed

    async def _node_gone(self, node: str) -> bool:
        """After an actor error (the node was just forgotten, so a read is due): is the node gone?"""
        listed = await self._refresh()
        return listed is not None and node not in listed

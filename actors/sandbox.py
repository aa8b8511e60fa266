"""The sandbox actor: where custom code runs under Ray, and the client the coordinator uses.

Contract: one named async actor `custom-code-sandbox` (namespace `flow-executor`, detached,
restartable) owns a `SandboxClient`, i.e. one single-threaded fork server that forks a
resource-limited child per run — the Ray worker itself is never forked. With
`SANDBOX_RESOURCE` set, the actor requires that custom resource, so a cluster can keep user code
on dedicated nodes (cluster.yaml's `sandbox` node type). `SandboxActorClient.run` has the same
signature as `SandboxClient.run`; each call is an actor task named `flow_id/element_id` in the
dashboard, and cancelling the awaiting coroutine cancels that task, which kills the child.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray

from actors.directory import NAMESPACE
from engine.settings import Settings
from services.sandbox.client import SandboxClient

SANDBOX_NAME = "custom-code-sandbox"


@ray.remote
class SandboxActor:
    def __init__(self) -> None:
        self.client = SandboxClient()

    async def run(self, code: str, inputs: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
        return await self.client.run(code, inputs, **options)

    async def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    async def server_pid(self) -> int | None:
        return self.client.server_pid


def sandbox_actor(settings: Settings) -> Any:
    resources = {settings.sandbox_resource: 0.001} if settings.sandbox_resource else {}
    return SandboxActor.options(
        name=SANDBOX_NAME,
        namespace=NAMESPACE,
        get_if_exists=True,
        lifetime="detached",
        max_restarts=-1,
        max_concurrency=10_000,
        num_cpus=0,
        resources=resources,
    ).remote()


class SandboxActorClient:
    def __init__(self, settings: Settings):
        self._settings = settings
        self._actor: Any = None

    def _handle(self) -> Any:
        if self._actor is None:
            self._actor = sandbox_actor(self._settings)
        return self._actor

    async def run(self, code: str, inputs: dict[str, Any], *, label: str = "", **options: Any) -> dict[str, Any]:
        method = self._handle().run
        if label:
            method = method.options(name=label)
        ref = method.remote(code, inputs, options)
        try:
            return await ref
        except asyncio.CancelledError:
            ray.cancel(ref)
            raise
        except ray.exceptions.RayTaskError as error:
            cause = getattr(error, "cause", None)
            raise (cause if isinstance(cause, Exception) else error) from None


def sandbox_client_for_ray(settings: Settings) -> SandboxActorClient:
    return SandboxActorClient(settings)

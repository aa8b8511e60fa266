"""The sandbox actor: where custom code runs under Ray, and the client the coordinator uses.

Contract:
- `SandboxActor` is one named async actor (`custom-code-sandbox`, namespace `flow-executor`,
  detached, restartable, `num_cpus=0`, high `max_concurrency`) that owns a `SandboxClient`,
  i.e. one single-threaded fork server that forks a resource-limited child per run. The Ray
  worker itself is never forked. With `SANDBOX_RESOURCE` set (e.g. `sandbox`), the actor
  requires that custom resource, so a cluster can keep user code on dedicated nodes; by default
  it needs none.
- `SandboxActorClient.run(code, inputs, *, memory_mb, cpu_seconds, timeout, label="")` has the
  signature of `SandboxClient.run`. Each call is an actor task named `label`
  (`flow_id/element_id`) in the Ray dashboard. Errors arrive as the same `ElementError`s; a
  dead or unreachable actor is `sandbox_unavailable` (transient). Cancelling the awaiting
  coroutine cancels the actor task (`ray.cancel`), whose cancellation kills the child.
- `isolation()` is the OS isolation level of its fork server (`namespaces+seccomp`,
  `landlock+seccomp`, `restricted-python-only` or `none`), which `GET /health` reports.
- `SandboxActorClient(settings)` is the `engine.ports.CodeRunner` the coordinator gives its
  `ServiceHub`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError

from actors.names import ACTOR_OPTIONS, SANDBOX_NAME
from actors.ray_types import remote_view
from engine.errors import ElementError
from engine.settings import Settings
from services.sandbox.client import SandboxClient, SandboxError
from services.sandbox.isolation import make_undumpable


@ray.remote
class SandboxActor:
    def __init__(self) -> None:
        make_undumpable()
        self.client = SandboxClient()

    async def run(self, code: str, inputs: dict[str, Any], limits: dict[str, Any]) -> dict[str, Any]:
        return await self.client.run(code, inputs, **limits)

    async def isolation(self) -> str | None:
        """Starts the fork server if needed; the OS isolation level it reached (see `isolation`)."""
        await self.client.start()
        return self.client.isolation

    async def server_pid(self) -> int | None:
        """Starts the fork server if needed; its pid (tests look at its children)."""
        await self.client.start()
        return self.client.server_pid


def actor_options(settings: Settings, name: str = SANDBOX_NAME) -> dict[str, Any]:
    options: dict[str, Any] = {"name": name, **ACTOR_OPTIONS}  # namespace, detached, num_cpus=0, …
    if settings.sandbox_resource:
        options["resources"] = {settings.sandbox_resource: 0.01}
    return options


def _unwrap(error: RayTaskError) -> BaseException:
    cause = getattr(error, "cause", None)
    if isinstance(cause, ElementError):
        return cause
    return SandboxError(f"the sandbox failed: {error}", error_type="sandbox_unavailable", transient=True)


class SandboxActorClient:
    def __init__(self, settings: Settings, name: str = SANDBOX_NAME):
        self._options = actor_options(settings, name)
        self._actor: Any = None

    @property
    def actor(self) -> Any:
        if self._actor is None:
            self._actor = remote_view(SandboxActor).options(**self._options).remote()
        return self._actor

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
        method = self.actor.run.options(name=label) if label else self.actor.run
        ref = method.remote(code, inputs, {**limits, "label": label})  # the label's flow id: fair slots
        try:
            outputs: dict[str, Any] = await ref
            return outputs
        except asyncio.CancelledError:
            ray.cancel(ref)
            raise
        except RayTaskError as error:
            raise _unwrap(error) from None
        except RayActorError as error:
            raise SandboxError(
                f"the sandbox actor is unavailable: {error}", error_type="sandbox_unavailable", transient=True
            ) from None

"""Per-process service clients, built lazily: the implementation of `engine.ports.Services`.

Contract: `ServiceHub(settings)` builds each service on first use from its settings — one
`BedrockService`, one `AptosService`, one in-process `SandboxClient` — and returns the same
object afterwards (so heavy clients are created once per process; the SDK of a service is
imported only when it is first used). The runtime may pass a ready implementation instead
(`ServiceHub(settings, sandbox=…)`: the Ray runtime's client of the sandbox actor; tests pass
fakes). `aclose()` closes every client that was built.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from engine.ports import AptosNode, CodeRunner, LlmService
from engine.settings import Settings

T = TypeVar("T")


class ServiceHub:
    def __init__(
        self,
        settings: Settings,
        *,
        bedrock: LlmService | None = None,
        aptos: AptosNode | None = None,
        sandbox: CodeRunner | None = None,
    ):
        self.settings = settings
        self._instances: dict[str, Any] = {
            name: given for name, given in (("bedrock", bedrock), ("aptos", aptos), ("sandbox", sandbox)) if given
        }
        self._lock = threading.Lock()

    @property
    def bedrock(self) -> LlmService:
        return self._get("bedrock", _new_bedrock)

    @property
    def aptos(self) -> AptosNode:
        return self._get("aptos", _new_aptos)

    @property
    def sandbox(self) -> CodeRunner:
        return self._get("sandbox", _new_sandbox)

    def _get(self, name: str, factory: Callable[[Settings], T]) -> T:
        instance: T | None = self._instances.get(name)
        if instance is not None:
            return instance
        with self._lock:
            if name not in self._instances:
                self._instances[name] = factory(self.settings)
            built: T = self._instances[name]
            return built

    async def aclose(self) -> None:
        """Close every client that has an async or sync `close`."""
        for instance in list(self._instances.values()):
            close = getattr(instance, "aclose", None) or getattr(instance, "close", None)
            if close is None:
                continue
            result = close()
            if hasattr(result, "__await__"):
                await result


def _new_bedrock(settings: Settings) -> LlmService:
    from services.bedrock import BedrockService

    return BedrockService(settings)


def _new_aptos(settings: Settings) -> AptosNode:
    from services.aptos import AptosService

    return AptosService(settings)


def _new_sandbox(settings: Settings) -> CodeRunner:
    from services.sandbox.client import SandboxClient

    return SandboxClient()

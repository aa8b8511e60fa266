"""Per-process service clients, built lazily by name.

Contract: a service module registers a factory with `@provides("name")`; `ServiceHub.get(name)`
builds it once per hub from the hub's settings and returns the same object afterwards. The
runtime keeps one hub per process (so heavy clients are created once) and may pass
`overrides` (e.g. the Ray runtime's sandbox client that calls the sandbox actor).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any

from engine.settings import Settings

_FACTORIES: dict[str, Callable[[Settings], Any]] = {}

# Where each service's factory lives, so `get` works without the caller importing it first.
_MODULES = {"bedrock": "services.bedrock", "aptos": "services.aptos", "sandbox": "services.sandbox"}


def provides(name: str) -> Callable[[Callable[[Settings], Any]], Callable[[Settings], Any]]:
    def decorator(factory: Callable[[Settings], Any]) -> Callable[[Settings], Any]:
        _FACTORIES[name] = factory
        return factory

    return decorator


class ServiceHub:
    def __init__(self, settings: Settings, overrides: dict[str, Any] | None = None):
        self.settings = settings
        self._instances: dict[str, Any] = dict(overrides or {})
        self._lock = threading.Lock()

    def get(self, name: str) -> Any:
        instance = self._instances.get(name)
        if instance is not None:
            return instance
        with self._lock:
            if name not in self._instances:
                if name not in _FACTORIES and name in _MODULES:
                    importlib.import_module(_MODULES[name])
                if name not in _FACTORIES:
                    raise KeyError(f"no service named {name!r}")
                self._instances[name] = _FACTORIES[name](self.settings)
            return self._instances[name]

    async def aclose(self) -> None:
        """Close every client that has an async or sync `close`."""
        for instance in list(self._instances.values()):
            close = getattr(instance, "aclose", None) or getattr(instance, "close", None)
            if close is None:
                continue
            result = close()
            if hasattr(result, "__await__"):
                await result

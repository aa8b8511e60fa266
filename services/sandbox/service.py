"""`@provides("sandbox")`: the in-process sandbox service, a `SandboxClient` per service hub."""

from engine.settings import Settings
from services.hub import provides
from services.sandbox.client import SandboxClient, SandboxError

__all__ = ["SandboxClient", "SandboxError", "create_sandbox"]


@provides("sandbox")
def create_sandbox(settings: Settings) -> SandboxClient:
    return SandboxClient()

"""The custom-code sandbox: RestrictedPython in a fresh, resource-limited process per run.

`@provides("sandbox")` gives the in-process `SandboxClient` (its own fork server); under Ray
the coordinator overrides it with the client of the sandbox actor (`actors.sandbox`).
"""

from engine.settings import Settings
from services.hub import provides
from services.sandbox.client import SandboxClient


@provides("sandbox")
def create_sandbox(settings: Settings) -> SandboxClient:
    return SandboxClient()

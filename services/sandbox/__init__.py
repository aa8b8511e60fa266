"""The custom-code sandbox: RestrictedPython in a fresh, resource-limited process per run.

Modules: `policy` (compile + namespace), `guards` (run-time guards, builtins, print cap),
`modules` (importable allow-list as read-only proxies), `child` (lock-down and one run in a
forked child), `forkserver` (the single-threaded process that forks the children), `protocol`
(length-prefixed JSON frames), `client` (`SandboxClient`, asyncio), `service` (the
`@provides("sandbox")` registration: an in-process `SandboxClient` with a fork server of its own,
for engine tests and `run_local`; under Ray the coordinator overrides it with `actors.sandbox`).

Inside the fork server (marked by `SANDBOX_FORK_SERVER=1` in its environment) the registration
is skipped: it would import pydantic and triple the size of the process every run forks.
"""

import os

if not os.environ.get("SANDBOX_FORK_SERVER"):
    from services.sandbox.service import SandboxClient, SandboxError, create_sandbox

    __all__ = ["SandboxClient", "SandboxError", "create_sandbox"]

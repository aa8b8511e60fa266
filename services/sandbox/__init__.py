"""The custom-code sandbox: RestrictedPython in a fresh, resource-limited process per run.

Modules: `policy` (compile + namespace), `guards` (run-time guards, builtins, print cap),
`modules` (importable allow-list as read-only proxies), `child` (lock-down and one run in a
forked child), `forkserver` (the single-threaded process that forks the children), `protocol`
(length-prefixed JSON frames), `client` (`SandboxClient`, asyncio: the in-process
implementation of `engine.ports.CodeRunner`, with a fork server of its own, for engine tests and
`run_local`; under Ray the coordinator uses `actors.sandbox` instead).

Importing this package imports nothing: the fork server imports only the modules it needs (not
pydantic, which would triple the size of the process every run forks).
"""

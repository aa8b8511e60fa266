"""The composition root: puts the built-in elements and the services together for a runtime
(the Ray actors, `run_local`, the benchmarks). Nothing below it imports it."""

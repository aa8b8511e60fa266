"""What the runs of a flow's inline sub-flows share with the flow's own run.

Contract:
- A sub-flow (the `flow` of an `iteration`, `loop` or `sub_flow` element) runs as a nested
  `FlowRun` inside the run of the element that holds it: same event seqs (its events carry a
  `scope`, see `engine.events.EventEmitter.nested`), same invoker and services, checkpoints in
  the same store under scoped keys, no `flow_started` / `flow_completed` of its own.
- `scoped_key(element_id, index, inner)`: the checkpoint key of element `inner` in run `index`
  of `element_id`'s sub-flow. Parts are joined by U+001F, a control character no id may hold
  (`engine.models.id_problem`), so keys never collide with top-level ids or with each other.
  `split_checkpoints` sorts a run's checkpoints into its own (by element id, the last of each)
  and those of each sub-flow run, keyed by `(element_id, index)`, with the prefix taken off.
- `RunGuard`: one per top-level run, shared by every nested run. `admit()` counts an element
  run; past `MAX_ELEMENT_RUNS_PER_FLOW` it trips once — its `error` says why, `on_trip` tells the
  top-level run to stop — and admits nothing more. `depth_allowed(depth)` holds sub-flows to
  `MAX_FLOW_DEPTH` at run time too (validation already refuses deeper ones).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from engine.contracts import ErrorInfo
from engine.run_store import ElementCheckpoint

SEPARATOR = "\x1f"


def scoped_key(element_id: str, index: int, inner: str) -> str:
    return f"{element_id}{SEPARATOR}{index}{SEPARATOR}{inner}"


def split_checkpoints(
    checkpoints: Iterable[ElementCheckpoint],
) -> tuple[dict[str, ElementCheckpoint], dict[tuple[str, int], list[ElementCheckpoint]]]:
    """A run's own checkpoints (the last of each element) and its sub-flow runs' (oldest first)."""
    own: dict[str, ElementCheckpoint] = {}
    nested: dict[tuple[str, int], list[ElementCheckpoint]] = defaultdict(list)
    for checkpoint in checkpoints:
        key = checkpoint.element_id
        if SEPARATOR not in key:
            own[key] = checkpoint
            continue
        element_id, index, inner = key.split(SEPARATOR, 2)
        if index.isdigit():
            nested[(element_id, int(index))].append(replace(checkpoint, element_id=inner))
    return own, dict(nested)


@dataclass
class RunGuard:
    """Limits a run and its sub-flows share: element runs in all, and nesting depth."""

    max_runs: int
    max_depth: int
    on_trip: Callable[[], None] = field(default=lambda: None)
    runs: int = 0
    error: ErrorInfo | None = None

    def admit(self) -> bool:
        """Count one more element run; False (and the guard trips) past the limit."""
        if self.error is not None:
            return False
        self.runs += 1
        if self.runs <= self.max_runs:
            return True
        self.error = {
            "error_type": "too_many_element_runs",
            "message": (
                f"the flow was stopped after {self.max_runs:,} element runs, sub-flows included "
                "(MAX_ELEMENT_RUNS_PER_FLOW): check the loops and iterations it runs"
            ),
        }
        self.on_trip()
        return False

    def depth_allowed(self, depth: int) -> bool:
        return depth <= self.max_depth

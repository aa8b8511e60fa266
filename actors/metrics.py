"""Service metrics through `ray.util.metrics` (shown in the Ray dashboard's metrics view and
exported to Prometheus by Ray's metrics agent).

Contract: metric names start with `flow_executor_`. Counters of flows started and completed
(by `status`), a histogram of element durations (by element `type`), counters of events
delivered to and dropped for Backend 2 and of Backend 2 reconnects. Recording never raises.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from ray.util import metrics

from engine.contracts import RunSnapshot

log = logging.getLogger(__name__)

_DURATION_BOUNDARIES_MS = [0.1, 0.5, 1, 5, 10, 50, 100, 500, 1000, 5000, 30000]


@lru_cache(maxsize=1)
def _metrics() -> dict[str, Any]:
    return {
        "started": metrics.Counter("flow_executor_flows_started", "Flows accepted by /execute"),
        "completed": metrics.Counter(
            "flow_executor_flows_completed", "Flows that ended, by final status", tag_keys=("status",)
        ),
        "element_ms": metrics.Histogram(
            "flow_executor_element_duration_ms",
            "Element run time in ms, by element type",
            boundaries=_DURATION_BOUNDARIES_MS,
            tag_keys=("type",),
        ),
        "delivered": metrics.Counter("flow_executor_events_delivered", "Events confirmed by Backend 2"),
        "dropped": metrics.Counter("flow_executor_events_dropped", "Events dropped from a full delivery queue"),
        "reconnects": metrics.Counter("flow_executor_backend2_reconnects", "Backend 2 connection failures"),
    }


def _safely(record: Any) -> None:
    try:
        record()
    except Exception as exc:  # metrics must never fail a flow
        log.debug("metric not recorded: %s", exc)


def flow_started() -> None:
    _safely(lambda: _metrics()["started"].inc())


def flow_completed(snapshot: RunSnapshot) -> None:
    def record() -> None:
        _metrics()["completed"].inc(tags={"status": snapshot["status"]})
        for element in snapshot["elements"].values():
            if element["duration_ms"] is not None:
                _metrics()["element_ms"].observe(element["duration_ms"], tags={"type": element["type"]})

    _safely(record)


def events_delivered(count: int) -> None:
    if count > 0:
        _safely(lambda: _metrics()["delivered"].inc(count))


def events_dropped(count: int) -> None:
    if count > 0:
        _safely(lambda: _metrics()["dropped"].inc(count))


def backend2_reconnect() -> None:
    _safely(lambda: _metrics()["reconnects"].inc())

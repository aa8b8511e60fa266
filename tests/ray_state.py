"""Reading Ray's state API from tests: task events reach it asynchronously, so poll."""

import time
from collections.abc import Callable

from ray.util.state import list_tasks


def wait_for_tasks(dashboard_url: str, name: str, until: Callable[[list], bool] = bool, timeout: float = 15.0) -> list:
    """The tasks named `name` once `until(tasks)` holds (or the last list seen at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        tasks = list_tasks(address=dashboard_url, filters=[("name", "=", name)])
        if until(tasks) or time.monotonic() >= deadline:
            return tasks
        time.sleep(0.5)

"""How typed code sees what Ray's decorators make: untyped handles, said in this one place.

`@ray.remote` turns a class into an actor class (`.options(...)`, `.remote(...)`) and a function
into a remote function; `@serve.deployment` turns a class into a deployment (`.bind()`). No type
checker follows those changes, and Ray ships no stubs that would. `remote_view(obj)` is `obj`
itself, typed `Any`, for the lines that call what the decorator added; everything else about the
class (its methods, the pure core it wraps) stays checked.
"""

from __future__ import annotations

from typing import Any


def remote_view(decorated: object) -> Any:
    """`decorated` as Ray made it at run time (an actor class, remote function or deployment)."""
    return decorated

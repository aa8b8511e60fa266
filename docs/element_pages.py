"""The element pages of docs/elements/, in README order, found from the built-in element types.

Contract: a page documents the element types named in backticks in its first heading (the
heading of data.md names `data_block`, `selector` and `merger`). `python docs/element_pages.py` prints the pages'
paths ordered by the first type they document, in the catalogue's order (alphabetical), and
exits 1 naming every built-in type without a page and every page that names no built-in type.
So a new element type needs its class and its page; the README build finds both.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runtime.catalog import builtin_registry  # after the path is set

PAGES = Path(__file__).resolve().parent / "elements"


def documented_types(page: Path) -> list[str]:
    heading = next((line for line in page.read_text().splitlines() if line.startswith("# ")), "")
    return re.findall(r"`([a-z0-9_]+)`", heading)


def ordered_pages() -> tuple[list[Path], list[str]]:
    """The pages in README order, and the problems found."""
    types = builtin_registry().known_types()
    pages = {page: documented_types(page) for page in sorted(PAGES.glob("*.md"))}
    problems = [f"{page.name}: its first heading names no element type" for page, named in pages.items() if not named]
    problems += [
        f"{page.name}: `{name}` is not a built-in element type"
        for page, named in pages.items()
        for name in named
        if name not in types
    ]
    documented = {name for named in pages.values() for name in named}
    problems += [f"element type `{name}` has no page in docs/elements/" for name in types if name not in documented]
    order = {name: index for index, name in enumerate(types)}
    listed = sorted(
        (page for page, named in pages.items() if named), key=lambda p: min(order.get(n, 10**6) for n in pages[p])
    )
    return listed, problems


if __name__ == "__main__":
    listed, problems = ordered_pages()
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    print("\n".join(str(page.relative_to(PAGES.parent.parent)) for page in listed))

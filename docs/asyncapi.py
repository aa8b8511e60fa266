"""Writes docs/asyncapi.yaml: the AsyncAPI 3.0 document of the events this service sends to
Backend 2, generated from the code (`web.json_schemas.asyncapi_document` with the built-in
element types and the version in pyproject.toml).

Contract: `.venv/bin/python docs/asyncapi.py` rewrites the file; `--check` writes nothing and
exits 1 when the committed file differs from what the code gives (the tests run it too), 0 when
it is up to date. `render()` is the file's text.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runtime.catalog import builtin_registry  # after the path is set
from web.json_schemas import asyncapi_document

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "docs" / "asyncapi.yaml"
HEADER = "# Generated from the code by docs/asyncapi.py; do not edit (run `.venv/bin/python docs/asyncapi.py`).\n"


def render() -> str:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    document = asyncapi_document(builtin_registry(), version=version)
    return HEADER + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/asyncapi.yaml is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = TARGET.read_text() if TARGET.exists() else ""
        if current != text:
            print("docs/asyncapi.yaml is out of date: run .venv/bin/python docs/asyncapi.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

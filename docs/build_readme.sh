#!/usr/bin/env bash
# Rebuilds README.md from its parts: docs/README.*.md and the element pages in docs/elements/
# (found and ordered by docs/element_pages.py from the built-in element types).
set -euo pipefail
cd "$(dirname "$0")/.."
pages=$(.venv/bin/python docs/element_pages.py)
{
  cat docs/README.head.md docs/README.config.md
  printf '\n## Element catalogue\n\nCommon fields of every element: `type`, `element_id` (equal to its key), `name`, `description`, `input_schema` / `output_schema` (`{name: {"type": "string|number|integer|boolean|object|array|any", "required": bool}}`), `on_error` (`fail` | `continue` | `default` with `default_outputs`), `timeout`, `retry`; connections from the `error` port of any element carry its error (see *Execution semantics*).\n'
  for page in $pages; do
    echo
    sed 's/^#/###/' "$page"
  done
  cat docs/README.benchmarks.md docs/README.tail.md
} > README.md

#!/usr/bin/env bash
# Rebuilds README.md from its parts: docs/README.*.md and the element pages in docs/elements/.
set -euo pipefail
cd "$(dirname "$0")/.."
{
  cat docs/README.head.md docs/README.config.md
  printf '\n## Element catalogue\n\nCommon fields of every element: `type`, `element_id` (equal to its key), `name`, `description`, `input_schema` / `output_schema` (`{name: {"type": "string|number|integer|boolean|object|array|any", "required": bool}}`), `on_error` (`fail` | `continue`), `timeout`, `retry`.\n'
  for page in start_end case flow_select inputs data random_generator llm_text llm_structured aptos_read aptos_transaction custom_code; do
    echo
    sed 's/^#/###/' "docs/elements/$page.md"
  done
  cat docs/README.benchmarks.md docs/README.tail.md
} > README.md

#!/usr/bin/env bash
# Creates .venv with Python 3.12 and installs requirements.txt. Idempotent.
# Finds 3.12 by itself: `python3.12` on PATH, else pyenv's 3.12.x, else says what to install.
set -euo pipefail
cd "$(dirname "$0")"

find_python312() {
  if command -v python3.12 >/dev/null 2>&1 && python3.12 -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
    command -v python3.12; return
  fi
  if command -v pyenv >/dev/null 2>&1; then
    local root candidate
    root="$(pyenv root)"
    for candidate in $(ls -d "$root"/versions/3.12.* 2>/dev/null | sort -V -r); do
      if [ -x "$candidate/bin/python3.12" ]; then echo "$candidate/bin/python3.12"; return; fi
    done
  fi
  for candidate in /usr/bin/python3.12 /usr/local/bin/python3.12; do
    if [ -x "$candidate" ]; then echo "$candidate"; return; fi
  done
  return 1
}

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
  if ! PY=$(find_python312); then
    echo "setup.sh: Python 3.12 is required (aptos-sdk needs it) but none was found." >&2
    echo "Install it (e.g. 'pyenv install 3.12' or your OS package python3.12) and run ./setup.sh again." >&2
    exit 1
  fi
  echo "setup.sh: creating .venv with $PY"
  rm -rf .venv
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
  echo "$want" > "$stamp"
fi
echo "setup.sh: ready (.venv, $(.venv/bin/python --version))"

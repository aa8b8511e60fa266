"""`.venv/bin/python -m bench.run_all` — runs every benchmark, writes docs/BENCHMARKS.md.

Each benchmark is a module with a `main()` that prints `name: value unit` lines; this runner
runs each in its own interpreter (so Ray start-ups and imports do not bleed between them),
with a time limit, and records the machine, the versions, the command and the figures, then
the hand-written reading notes of docs/BENCHMARKS.notes.md.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS: list[tuple[str, str, list[str]]] = [
    ("Engine overhead vs LangGraph", "bench.bench_engine", []),
    ("Service latency and throughput (HTTP + Ray + Backend 2)", "bench.bench_service", []),
    ("LLM streaming (fake Bedrock)", "bench.bench_llm", []),
    ("LLM flows through the whole service (fake Bedrock → Backend 2)", "bench.bench_llm_service", []),
    ("CPU per relayed LLM token (fake Bedrock → Backend 2)", "bench.bench_llm_service", ["--tokens"]),
    ("The per-token path without Ray or Bedrock", "bench.bench_token_path", []),
    ("custom_code sandbox", "bench.bench_custom_code", []),
    ("Run store: cost of persistence", "bench.bench_run_store", []),
    ("Iteration: 1,000 items vs LangGraph Send", "bench.bench_iteration", []),
    ("The service beside a single-process FastAPI + LangGraph peer", "bench.bench_peer", []),
]
LIMIT_SECONDS = 300


def _versions() -> str:
    names = ["ray", "fastapi", "pydantic", "websockets", "boto3", "aptos-sdk", "RestrictedPython", "langgraph"]
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


def run_one(module: str, args: list[str]) -> tuple[str, float]:
    if not (ROOT / (module.replace(".", "/") + ".py")).exists():
        return "(not present)\n", 0.0
    t0 = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=LIMIT_SECONDS
        )
        output = done.stdout + (
            f"\n(exit {done.returncode}: {done.stderr.strip()[-800:]})\n" if done.returncode else ""
        )
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        output += f"\n(stopped after {LIMIT_SECONDS} s)\n"
    return output, time.monotonic() - t0


def main() -> None:
    sections = []
    for title, module, args in BENCHMARKS:
        command = " ".join([module, *args])
        print(f"== {title} ({command})", flush=True)
        output, seconds = run_one(module, args)
        print(output, flush=True)
        figures = "\n".join(line for line in output.splitlines() if re.match(r"^([a-z0-9_]+: |\()", line))
        sections.append(f"## {title}\n\n`python -m {command}` ({seconds:.0f} s)\n\n```\n{figures}\n```\n")
    header = (
        "# Benchmarks\n\n"
        f"Produced by `.venv/bin/python -m bench.run_all` on {datetime.date.today().isoformat()}.\n\n"
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, {platform.platform()}\n"
        f"- Python {platform.python_version()}; {_versions()}\n"
        "- every figure is a line `name: value unit`; peers are measured in the same run.\n\n"
    )
    notes = ROOT / "docs" / "BENCHMARKS.notes.md"  # how to read the figures, kept by hand
    tail = "\n" + notes.read_text() if notes.exists() else ""
    (ROOT / "docs" / "BENCHMARKS.md").write_text(header + "\n".join(sections) + tail)
    print("wrote docs/BENCHMARKS.md")


if __name__ == "__main__":
    main()

"""Test configuration: every module in tests/fixtures/ is loaded as a pytest plugin.

Each area (Bedrock fake, Aptos fake, sandbox, Ray service…) keeps its fixtures in a module of
its own there, so adding an area never edits a shared conftest.
"""

from pathlib import Path

pytest_plugins = sorted(
    f"tests.fixtures.{path.stem}"
    for path in (Path(__file__).parent / "fixtures").glob("*.py")
    if path.stem != "__init__"
)

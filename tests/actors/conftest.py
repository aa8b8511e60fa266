"""The run store the coordinator tests run on: each test once with memory, once with SQLite."""

import pytest

from services.run_store import MemoryRunStore, SqlRunStore


@pytest.fixture(params=["memory", "sqlite"])
async def store(request, tmp_path):
    made = MemoryRunStore() if request.param == "memory" else SqlRunStore.sqlite(tmp_path)
    yield made
    await made.close()

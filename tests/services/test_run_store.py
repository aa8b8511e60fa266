"""services/run_store/: the contract of `engine.run_store`, the same tests for every backend —
memory, SQLite (a file under tmp_path) and PostgreSQL (a database of its own per test, on the
session's server: see tests/fixtures/postgres.py) — then what only the SQL backends have: the
migration of a version-1 database; SQLite's file settings, space reclaimed, lock waits and WAL
checkpoints; PostgreSQL's row locks, connections terminated and databases that went away; the
factory.

Times are explicit numbers (no clock reads, no sleeps): nothing here depends on how fast the
machine is.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import inspect, make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from engine.contracts import ErrorInfo, FlowStatusName, RunSnapshot
from engine.run_store import (
    Commit,
    ElementCheckpoint,
    NewRun,
    OpenDelivery,
    RunPage,
    RunStore,
    RunStoreError,
    RunUpdate,
    run_cursor,
)
from engine.settings import Settings
from services.run_store import MemoryRunStore, SqlRunStore, migrations, open_run_store, schema
from services.run_store.dialects import SqliteDialect
from services.run_store.migrations import MIGRATIONS
from tests.fixtures.postgres import EmbeddedPostgres, PostgresDatabase

KINDS = ["memory", "sqlite", "postgres"]


@dataclass
class Backing:
    """Where a test's store keeps its data; `new_store()` is another store object on it."""

    kind: str
    new_store: Callable[[], RunStore]
    sqlite_dir: Path | None = None
    database: PostgresDatabase | None = None

    @property
    def sqlite_file(self) -> Path:
        assert self.sqlite_dir is not None
        return self.sqlite_dir / "runs.sqlite3"


@pytest.fixture(params=KINDS)
def backing(request, tmp_path) -> Backing:
    kind = request.param
    if kind == "memory":
        memory = MemoryRunStore()  # nothing outlives the object: "another store" is the same one
        return Backing(kind, lambda: memory)
    if kind == "sqlite":
        directory = tmp_path / "data" / "store"  # the store creates the directories
        return Backing(kind, lambda: SqlRunStore.sqlite(directory), sqlite_dir=directory)
    database: PostgresDatabase = request.getfixturevalue("postgres_database")
    return Backing(kind, lambda: SqlRunStore.postgres(database.url), database=database)


@pytest.fixture
async def store(backing):
    store = backing.new_store()
    await store.open()
    yield store
    await store.close()


def new_run(
    flow_id: str, *, owner: str = "alice", created_at: float = 1000.0, coordinator: int = 0, body: bytes = b"{}"
):
    return NewRun(flow_id, owner, body, f"ws://backend2.test/{flow_id}", coordinator, created_at)


def snapshot(
    flow_id: str, status: FlowStatusName, *, duration_ms: float | None = None, error: ErrorInfo | None = None
) -> RunSnapshot:
    return {
        "flow_id": flow_id,
        "status": status,
        "started_at": "2026-01-01T00:00:00Z",
        "finished_at": None,
        "duration_ms": duration_ms,
        "elements": {},
        "outputs": {"answer": "naïve ✓", "n": [1, 2.5, None]},
        "error": error,
        "last_seq": 0,
    }


def event(flow_id: str, seq: int) -> tuple[str, int, str]:
    return (flow_id, seq, f'{{"flow_id":"{flow_id}","seq":{seq},"type":"llm_chunk","data":{{"chunk":"x"}}}}')


def finished(flow_id: str, at: float, status: FlowStatusName = "completed", **snap) -> RunUpdate:
    return RunUpdate(flow_id, status, snapshot(flow_id, status, **snap), finished_at=at)


async def test_create_refuses_an_unfinished_or_foreign_run_and_replaces_a_finished_one_of_its_owner(store):
    assert await store.create_run(new_run("f1", body=b'{"v":1}'))
    assert not await store.create_run(new_run("f1"))  # not finished
    assert not await store.create_run(new_run("f1", owner="bob"))
    await store.commit(
        Commit(
            events=[event("f1", 1), event("f1", 2)],
            checkpoints=[("f1", ElementCheckpoint("a", "completed", {"x": 1}))],
            runs=[finished("f1", 1500.0)],
        )
    )
    await store.mark_delivered("f1", 2)
    assert not await store.create_run(new_run("f1", owner="bob"))  # finished, but another owner's
    assert (await store.get_run("f1")).status == "completed"

    assert await store.create_run(new_run("f1", body=b'{"v":2}', created_at=2000.0, coordinator=1))
    record = await store.get_run("f1")
    assert (record.status, record.body, record.created_at, record.coordinator) == ("pending", b'{"v":2}', 2000.0, 1)
    assert (record.owner, record.backend2_ws_url) == ("alice", "ws://backend2.test/f1")
    assert (record.snapshot, record.finished_at, record.last_seq, record.delivered_seq) == (None, None, 0, 0)
    assert not record.finished
    assert await store.events("f1") == []
    assert await store.checkpoints("f1") == []
    assert await store.get_run("unknown") is None


async def test_create_runs_answers_each_run_as_create_run_would(store):
    assert await store.create_run(new_run("running"))
    assert await store.create_run(new_run("done"))
    await store.commit(Commit(events=[event("done", 1)], runs=[finished("done", 1500.0)]))
    batch = [
        new_run("new-1"),
        new_run("running"),  # not finished: refused
        new_run("new-2", owner="bob"),
        new_run("new-1", owner="bob"),  # twice in the batch: the first wins
        new_run("done", body=b'{"v":2}'),  # finished, same owner: replaced
    ]
    assert await store.create_runs(batch) == [True, False, True, False, True]
    assert await store.create_runs([]) == []
    assert (await store.get_run("new-1")).owner == "alice"
    assert (await store.get_run("new-2")).owner == "bob"
    replaced = await store.get_run("done")
    assert (replaced.status, replaced.body) == ("pending", b'{"v":2}')
    assert await store.events("done") == []
    assert (await store.get_run("running")).status == "pending"


async def test_create_runs_that_fails_writes_none_of_its_runs(store, backing):
    if backing.kind == "memory":
        pytest.skip("the memory store has no write that can fail half-way")
    broken = new_run("broken", owner=None)  # type: ignore[arg-type]  # the owner column is NOT NULL
    with pytest.raises(RunStoreError):
        await store.create_runs([new_run("first"), broken, new_run("last")])
    assert await store.get_run("first") is None and await store.get_run("last") is None
    assert await store.create_runs([new_run("first")]) == [True]  # the store goes on


async def test_one_commit_writes_events_checkpoints_and_updates_of_several_runs(store):
    for flow_id in ("a", "b", "c"):
        assert await store.create_run(new_run(flow_id))
    error: ErrorInfo = {"error_type": "timeout", "message": "too slow", "element_id": "llm"}
    await store.commit(
        Commit(
            events=[event("a", 1), event("a", 2), event("b", 1)],
            checkpoints=[
                ("a", ElementCheckpoint("x", "running")),
                ("b", ElementCheckpoint("y", "failed", error=error)),
            ],
            runs=[
                RunUpdate("a", "running", snapshot("a", "running")),
                finished("b", 1200.0, "failed", duration_ms=12.5, error=error),
            ],
        )
    )
    a, b, c = [await store.get_run(flow_id) for flow_id in ("a", "b", "c")]
    assert (a.status, a.last_seq, a.finished_at, a.snapshot) == ("running", 2, None, snapshot("a", "running"))
    assert (b.status, b.last_seq, b.finished_at, b.finished) == ("failed", 1, 1200.0, True)
    assert b.snapshot["error"] == error and b.snapshot["duration_ms"] == 12.5
    assert (c.status, c.last_seq) == ("pending", 0)
    assert (await store.checkpoints("b"))[0].error == error

    # events alone raise last_seq; an update alone leaves it; a retried commit changes nothing
    await store.commit(Commit(events=[event("c", 1), event("c", 2), event("c", 3)]))
    await store.commit(Commit(runs=[RunUpdate("a", "running", snapshot("a", "running"))]))
    await store.commit(Commit(events=[event("c", 1), event("c", 2), event("c", 3)]))
    await store.commit(Commit())
    assert [(await store.get_run(f)).last_seq for f in ("a", "b", "c")] == [2, 1, 3]
    assert await store.events("c") == [event("c", seq)[2] for seq in (1, 2, 3)]

    # a finished status without finished_at still gets one (prune must reach every finished run)
    await store.commit(Commit(runs=[RunUpdate("a", "cancelled", snapshot("a", "cancelled"))]))
    assert (await store.get_run("a")).finished_at is not None
    assert await store.row_counts() == {"runs": 3, "events": 6, "checkpoints": 2}


async def test_events_come_after_a_seq_in_order_up_to_a_limit(store):
    await store.create_run(new_run("f"))
    await store.commit(Commit(events=[event("f", seq) for seq in range(1, 6)]))
    await store.commit(Commit(events=[event("f", seq) for seq in range(6, 11)]))
    payloads = {seq: event("f", seq)[2] for seq in range(1, 11)}
    assert await store.events("f") == [payloads[seq] for seq in range(1, 11)]
    assert await store.events("f", after_seq=3, limit=4) == [payloads[seq] for seq in (4, 5, 6, 7)]
    assert await store.events("f", after_seq=9) == [payloads[10]]
    assert await store.events("f", after_seq=10) == []
    assert await store.events("f", limit=0) == []
    assert await store.events("unknown") == []


async def test_checkpoints_are_upserted_per_element(store):
    await store.create_run(new_run("f"))
    outputs = {"text": "héllo\u0000 ✓", "nested": {"list": [1, 2.5, None, True], "empty": {}}, "big": 2**53}
    await store.commit(
        Commit(
            checkpoints=[
                ("f", ElementCheckpoint("b", "running", attempts=1, started_at="2026-01-01T00:00:00Z")),
                ("f", ElementCheckpoint("a", "completed", outputs, ports=["yes"], attempts=2, duration_ms=3.5)),
            ]
        )
    )
    assert await store.checkpoints("f") == [
        ElementCheckpoint("a", "completed", outputs, ports=["yes"], attempts=2, duration_ms=3.5),
        ElementCheckpoint("b", "running", attempts=1, started_at="2026-01-01T00:00:00Z"),
    ]
    # the same element twice in one batch: the later one wins, as in two commits
    error: ErrorInfo = {"error_type": "element_error", "message": "boom"}
    await store.commit(
        Commit(
            checkpoints=[
                ("f", ElementCheckpoint("b", "completed", {"v": 1}, attempts=1)),
                ("f", ElementCheckpoint("b", "failed", attempts=3, error=error)),
            ]
        )
    )
    assert (await store.checkpoints("f"))[1] == ElementCheckpoint("b", "failed", attempts=3, error=error)
    assert await store.row_counts() == {"runs": 1, "events": 0, "checkpoints": 2}
    assert await store.checkpoints("unknown") == []


async def test_list_runs_pages_newest_first_with_filters(store):
    created = {"r0": 1.0, "r1": 2.0, "r2": 3.0, "r3": 3.0, "r4": 3.0, "r5": 4.0, "r6": 5.5}
    for index, (flow_id, at) in enumerate(created.items()):
        await store.create_run(new_run(flow_id, owner="alice" if index % 2 == 0 else "bob", created_at=at))
    error: ErrorInfo = {"error_type": "timeout", "message": "late"}
    await store.commit(
        Commit(runs=[finished("r1", 10.0, duration_ms=7.0), finished("r4", 11.0, "failed", error=error)])
    )
    newest_first = ["r6", "r5", "r4", "r3", "r2", "r1", "r0"]  # ties of created_at: flow id, descending

    async def listing(**filters) -> list[str]:
        flow_ids, cursor = [], None
        while True:
            page = await store.list_runs(limit=2, before=cursor, **filters)
            assert len(page.runs) <= 2
            flow_ids += [summary.flow_id for summary in page.runs]
            if page.next is None:
                return flow_ids
            cursor = page.next

    assert await listing() == newest_first
    assert await listing(owner="alice") == ["r6", "r4", "r2", "r0"]
    assert await listing(status="pending") == ["r6", "r5", "r3", "r2", "r0"]
    assert await listing(owner="bob", status="completed") == ["r1"]
    assert await listing(owner="nobody") == []

    page = await store.list_runs(limit=50)
    assert [s.flow_id for s in page.runs] == newest_first and page.next is None
    by_id = {s.flow_id: s for s in page.runs}
    assert (by_id["r1"].status, by_id["r1"].finished_at, by_id["r1"].duration_ms, by_id["r1"].error) == (
        "completed", 10.0, 7.0, None
    )  # fmt: skip
    assert (by_id["r4"].status, by_id["r4"].error, by_id["r6"].created_at) == ("failed", error, 5.5)
    assert [s.flow_id for s in (await store.list_runs(limit=0)).runs] == ["r6"]  # clamped to 1
    assert len((await store.list_runs(limit=10_000)).runs) == 7  # clamped to 500
    # any `run_cursor` continues a listing (the HTTP layer makes its own when it merges coordinators' pages)
    after_r3 = await store.list_runs(limit=3, before=run_cursor(by_id["r3"]))
    assert [s.flow_id for s in after_r3.runs] == ["r2", "r1", "r0"] and after_r3.next is None
    for not_a_cursor in ("not-a-cursor", "nan/r3", "inf/r3", ""):
        assert await store.list_runs(before=not_a_cursor) == RunPage(runs=[], next=None)


async def test_unfinished_runs_per_coordinator_oldest_first(store):
    for flow_id, at, coordinator in [("u3", 3.0, 1), ("u1", 1.0, 0), ("u2", 2.0, 1), ("done", 0.5, 0)]:
        await store.create_run(new_run(flow_id, created_at=at, coordinator=coordinator, body=flow_id.encode()))
    await store.commit(Commit(runs=[finished("done", 9.0), RunUpdate("u2", "running", snapshot("u2", "running"))]))
    assert [r.flow_id for r in await store.unfinished_runs()] == ["u1", "u2", "u3"]
    assert [r.flow_id for r in await store.unfinished_runs(coordinator=1)] == ["u2", "u3"]
    (u1,) = await store.unfinished_runs(coordinator=0)
    assert (u1.flow_id, u1.body, u1.status, u1.coordinator) == ("u1", b"u1", "pending", 0)
    assert await store.unfinished_runs(coordinator=7) == []


async def test_a_claim_moves_an_unfinished_run_only_from_the_coordinator_that_holds_it(store):
    for flow_id in ("run", "done"):
        await store.create_run(new_run(flow_id, coordinator=3))
    await store.commit(Commit(runs=[finished("done", 9.0)]))
    assert not await store.claim_run("run", 1, 0)  # not its holder: nothing moves
    assert await store.claim_run("run", 3, 0)
    assert not await store.claim_run("run", 3, 2)  # the second claimant of a run loses
    assert not await store.claim_run("done", 3, 0)  # a finished run stays where it ended
    assert not await store.claim_run("unknown", 3, 0)
    assert [(r.flow_id, r.coordinator) for r in await store.unfinished_runs()] == [("run", 0)]
    assert [(d.flow_id, d.coordinator) for d in await store.open_deliveries()] == [("run", 0)]
    assert (await store.get_run("done")).coordinator == 3


async def test_open_deliveries_and_mark_delivered_never_moves_backwards(store):
    for flow_id, at in [("live", 1.0), ("behind", 2.0), ("done", 3.0)]:
        await store.create_run(new_run(flow_id, created_at=at))
    events = [event(f, seq) for f in ("behind", "done") for seq in (1, 2, 3)]
    await store.commit(Commit(events=events, runs=[finished("behind", 5.0), finished("done", 5.0)]))
    await store.mark_delivered("done", 3)
    assert await store.open_deliveries() == [
        OpenDelivery("live", "ws://backend2.test/live", 0, 0, False, 0),
        OpenDelivery("behind", "ws://backend2.test/behind", 0, 3, True, 0),
    ]
    await store.mark_delivered("behind", 2)
    await store.mark_delivered("behind", 1)  # late, out-of-order confirmation: ignored
    assert (await store.get_run("behind")).delivered_seq == 2
    await store.mark_delivered("behind", 3)
    await store.mark_delivered("unknown", 3)
    assert [d.flow_id for d in await store.open_deliveries()] == ["live"]
    await store.commit(Commit(events=[event("live", 1)]))
    assert await store.open_deliveries() == [OpenDelivery("live", "ws://backend2.test/live", 0, 1, False, 0)]


async def test_mark_delivered_many_raises_each_flow_s_seq_in_one_call(store):
    for flow_id in ("a", "b", "c"):
        await store.create_run(new_run(flow_id))
    await store.mark_delivered("c", 5)
    await store.mark_delivered_many({"a": 2, "b": 7, "c": 3, "unknown": 4})  # c: late, ignored
    assert [(await store.get_run(f)).delivered_seq for f in ("a", "b", "c")] == [2, 7, 5]
    await store.mark_delivered_many({})
    assert await store.get_run("unknown") is None


async def test_last_seq_is_the_highest_event_stored_whatever_commit_wrote_it(store):
    """A run's last seq follows its events alone: events committed after its end reopen its
    delivery; replacing the run starts it again from 0."""
    await store.create_run(new_run("f"))
    await store.commit(Commit(events=[event("f", 2), event("f", 1)]))  # out of order, in one batch
    assert (await store.get_run("f")).last_seq == 2
    await store.commit(Commit(events=[event("f", 3)], runs=[finished("f", 5.0)]))
    await store.mark_delivered("f", 3)
    assert await store.open_deliveries() == []
    await store.commit(Commit(events=[event("f", 4)]))  # after the end, without an update
    assert (await store.get_run("f")).last_seq == 4
    assert await store.open_deliveries() == [OpenDelivery("f", "ws://backend2.test/f", 3, 4, True, 0)]
    assert await store.create_run(new_run("f", created_at=2000.0))
    record = await store.get_run("f")
    assert (record.last_seq, record.delivered_seq) == (0, 0)
    assert [r.last_seq for r in await store.unfinished_runs()] == [0]


async def test_prune_deletes_only_runs_finished_before_the_time_with_their_rows(store):
    for flow_id in ("old", "recent", "running", "old2"):
        await store.create_run(new_run(flow_id, created_at=1.0))
    await store.commit(
        Commit(
            events=[event(f, seq) for f in ("old", "recent", "running", "old2") for seq in (1, 2)],
            checkpoints=[(f, ElementCheckpoint("a", "completed", {})) for f in ("old", "recent", "running")],
            runs=[finished("old", 100.0), finished("recent", 300.0), finished("old2", 199.0, "timed_out")],
        )
    )
    assert await store.prune(200.0) == 2
    for flow_id in ("old", "old2"):
        assert await store.get_run(flow_id) is None
        assert await store.events(flow_id) == [] and await store.checkpoints(flow_id) == []
    assert (await store.get_run("recent")).status == "completed"
    assert len(await store.events("running")) == 2 and len(await store.checkpoints("recent")) == 1
    assert await store.row_counts() == {"runs": 2, "events": 4, "checkpoints": 2}
    assert await store.prune(200.0) == 0
    assert await store.prune(1000.0) == 1  # "running" is not finished: never pruned
    assert await store.row_counts() == {"runs": 1, "events": 2, "checkpoints": 1}


async def test_data_survives_close_and_reopen(backing):
    first = backing.new_store()
    await first.open()
    await first.create_run(new_run("f", body=b"\x00\xffbody"))
    await first.commit(
        Commit(
            events=[event("f", 1)],
            checkpoints=[("f", ElementCheckpoint("a", "completed", {"k": "v"}))],
            runs=[RunUpdate("f", "running", snapshot("f", "running"))],
        )
    )
    await first.close()
    with pytest.raises(RunStoreError):
        await first.get_run("f")  # closed

    second = backing.new_store()
    await second.open()
    try:
        record = await second.get_run("f")
        assert (record.body, record.status, record.snapshot, record.last_seq) == (
            b"\x00\xffbody", "running", snapshot("f", "running"), 1
        )  # fmt: skip
        assert await second.events("f") == [event("f", 1)[2]]
        assert await second.checkpoints("f") == [ElementCheckpoint("a", "completed", {"k": "v"})]
    finally:
        await second.close()


async def _schema_versions(backing: Backing) -> list[int]:
    if backing.kind == "sqlite":
        with sqlite3.connect(backing.sqlite_file) as conn:
            return [row[0] for row in conn.execute("SELECT version FROM schema_version ORDER BY version")]
    conn = await asyncpg.connect(backing.database.url)
    try:
        return [row["version"] for row in await conn.fetch("SELECT version FROM schema_version ORDER BY version")]
    finally:
        await conn.close()


async def test_open_migrates_once_even_when_stores_open_at_the_same_time(backing):
    stores = [backing.new_store() for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))  # a new database: all race to create it
    try:
        await stores[0].open()  # opening an open store: nothing happens
        assert await stores[1].create_run(new_run("f"))
        assert not await stores[2].create_run(new_run("f"))
        await stores[0].close()
        await stores[0].open()  # reopening an existing database: nothing to migrate
        assert (await stores[0].get_run("f")).status == "pending"
        if backing.kind != "memory":
            assert await _schema_versions(backing) == [m.version for m in MIGRATIONS]
    finally:
        for s in stores:
            await s.close()


def _sqlalchemy_url(backing: Backing) -> str:
    if backing.kind == "sqlite":
        return f"sqlite+aiosqlite:///{backing.sqlite_file}"
    return make_url(backing.database.url).set(drivername="postgresql+asyncpg").render_as_string(False)


async def _make_version_1(backing: Backing) -> None:
    """A database as version 1 left it: today's tables, with what version 2 took out of `runs`
    (`last_seq`, `delivered_seq` and the partial index of the runs Backend 2 was behind on) put
    back and no `deliveries` table; two runs, one of them Backend 2 is behind on."""
    if backing.kind == "sqlite":
        backing.sqlite_dir.mkdir(parents=True)
    engine = create_async_engine(_sqlalchemy_url(backing))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(schema.metadata.create_all)
            await conn.run_sync(migrations.schema_version.create)
            await conn.execute(text("DROP TABLE deliveries"))
            for name in ("last_seq", "delivered_seq"):
                await conn.execute(text(f"ALTER TABLE runs ADD COLUMN {name} BIGINT NOT NULL DEFAULT 0"))
            await conn.execute(
                text("CREATE INDEX ix_runs_undelivered ON runs (flow_id) WHERE delivered_seq < last_seq")
            )
            await conn.execute(text("INSERT INTO schema_version (version, applied_at) VALUES (1, 0.0)"))
            for flow_id, status, created_at, last, delivered in [
                ("done", "completed", 1.0, 3, 3),
                ("behind", "failed", 2.0, 3, 1),
            ]:
                await conn.execute(
                    text(
                        "INSERT INTO runs (flow_id, owner, body, backend2_ws_url, coordinator, status, created_at,"
                        " finished_at, last_seq, delivered_seq) VALUES (:f, 'alice', :body, :url, 0, :status, :at, 9.0,"
                        " :last, :delivered)"
                    ),
                    {"f": flow_id, "body": b"{}", "url": f"ws://backend2.test/{flow_id}", "status": status,
                     "at": created_at, "last": last, "delivered": delivered},
                )  # fmt: skip
                for seq in range(1, last + 1):
                    await conn.execute(
                        text("INSERT INTO events (flow_id, seq, payload) VALUES (:f, :seq, :p)"),
                        {"f": flow_id, "seq": seq, "p": event(flow_id, seq)[2]},
                    )
    finally:
        await engine.dispose()


async def _runs_columns_and_indexes(backing: Backing) -> tuple[set[str], set[str]]:
    engine = create_async_engine(_sqlalchemy_url(backing))
    try:
        async with engine.connect() as conn:

            def read(sync_conn) -> tuple[set[str], set[str]]:
                found = inspect(sync_conn)
                return {c["name"] for c in found.get_columns("runs")}, {i["name"] for i in found.get_indexes("runs")}

            return await conn.run_sync(read)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("backing", ["sqlite", "postgres"], indirect=True)
async def test_open_migrates_a_version_1_database_keeping_its_runs(backing):
    await _make_version_1(backing)
    stores = [backing.new_store() for _ in range(2)]
    await asyncio.gather(*(s.open() for s in stores))  # both race to migrate it: one does
    try:
        assert await _schema_versions(backing) == [1, 2]
        columns, indexes = await _runs_columns_and_indexes(backing)
        assert not {"last_seq", "delivered_seq"} & columns and "ix_runs_undelivered" not in indexes
        done, behind = await stores[0].get_run("done"), await stores[1].get_run("behind")
        assert (done.status, done.last_seq, done.delivered_seq) == ("completed", 3, 3)
        assert (behind.status, behind.last_seq, behind.delivered_seq, behind.body) == ("failed", 3, 1, b"{}")
        assert await stores[0].open_deliveries() == [OpenDelivery("behind", "ws://backend2.test/behind", 1, 3, True, 0)]
        await stores[1].mark_delivered("behind", 3)
        assert await stores[0].open_deliveries() == []
        assert await stores[0].create_run(new_run("done"))  # finished, same owner: replaced
        await stores[0].commit(Commit(events=[event("done", 1)]))
        assert (await stores[1].get_run("done")).last_seq == 1
        assert await stores[0].prune(10.0) == 1
        assert await stores[0].row_counts() == {"runs": 1, "events": 1, "checkpoints": 0}
    finally:
        for s in stores:
            await s.close()


async def test_steady_load_then_prune_gives_rows_and_space_back(backing):
    """5,000 runs with events and checkpoints, all finished, then pruned: nothing is left, and an
    SQLite file is back near its size after the first small batch."""
    store = backing.new_store()
    await store.open()
    try:

        async def load(first: int, count: int, batch: int) -> None:
            for start in range(first, first + count, batch):
                flow_ids = [f"run-{i:05d}" for i in range(start, min(start + batch, first + count))]
                for flow_id in flow_ids:
                    assert await store.create_run(new_run(flow_id, created_at=float(start)))
                await store.commit(
                    Commit(
                        events=[event(f, seq) for f in flow_ids for seq in range(1, 5)],
                        checkpoints=[
                            (f, ElementCheckpoint(e, "completed", {"out": "y" * 40})) for f in flow_ids for e in "ab"
                        ],
                        runs=[finished(f, 100.0, duration_ms=1.0) for f in flow_ids],
                    )
                )

        await load(0, 20, 20)
        small = backing.sqlite_file.stat().st_size if backing.kind == "sqlite" else 0
        await load(20, 5000, 250)
        assert await store.row_counts() == {"runs": 5020, "events": 20080, "checkpoints": 10040}
        if backing.kind == "sqlite":
            assert backing.sqlite_file.stat().st_size > 2 * small + 1024 * 1024  # it did grow
        assert await store.prune(200.0) == 5020
        assert await store.row_counts() == {"runs": 0, "events": 0, "checkpoints": 0}
        assert (await store.list_runs()).runs == []
        if backing.kind == "sqlite":
            assert backing.sqlite_file.stat().st_size <= max(2 * small, small + 1024 * 1024)
    finally:
        await store.close()


async def test_a_store_not_open_raises(backing):
    store = backing.new_store()
    with pytest.raises(RunStoreError, match="not open"):
        await store.commit(Commit(events=[event("f", 1)]))
    with pytest.raises(RunStoreError, match="not open"):
        await store.get_run("f")


# -- SQLite ------------------------------------------------------------------------------------


def sqlite_store(tmp_path: Path, **options) -> SqlRunStore:
    return SqlRunStore.sqlite(tmp_path / "data", **options)


async def test_sqlite_file_is_wal_with_incremental_vacuum(tmp_path):
    store = sqlite_store(tmp_path)
    await store.open()
    await store.close()
    with sqlite3.connect(tmp_path / "data" / "runs.sqlite3") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA auto_vacuum").fetchone() == (2,)  # incremental
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"runs", "deliveries", "events", "checkpoints", "schema_version"} <= tables
    assert {"ix_runs_created", "ix_runs_status_coordinator", "ix_runs_finished_at"} <= indexes


async def test_sqlite_write_blocked_past_the_busy_timeout_raises_then_recovers(tmp_path):
    store = sqlite_store(tmp_path, busy_timeout=0.05)
    await store.open()
    await store.create_run(new_run("f"))
    other = sqlite3.connect(tmp_path / "data" / "runs.sqlite3", isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock, and keeps it
        with pytest.raises(
            RunStoreError, match=r"commit failed \(SQLite .*runs\.sqlite3\): OperationalError: database is locked"
        ):
            await store.commit(Commit(events=[event("f", 1)], runs=[finished("f", 5.0)]))
        assert (await store.get_run("f")).status == "pending"  # readers are not blocked; nothing was written
        other.execute("ROLLBACK")
        await store.commit(Commit(events=[event("f", 1)], runs=[finished("f", 5.0)]))
        assert (await store.get_run("f")).last_seq == 1
    finally:
        other.close()
        await store.close()


async def test_sqlite_writer_waits_for_a_lock_released_within_the_busy_timeout(tmp_path):
    store = sqlite_store(tmp_path)
    await store.open()
    await store.create_run(new_run("f"))
    await store.mark_delivered("f", 0)  # nothing to raise: the hot writes' connection is taken now
    other = sqlite3.connect(tmp_path / "data" / "runs.sqlite3", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO events (flow_id, seq, payload) VALUES ('f', 1, '{}')")
        writes = asyncio.gather(
            store.commit(Commit(events=[event("f", 1), event("f", 2)])), store.mark_delivered("f", 1)
        )
        await asyncio.sleep(0)  # the commit is waiting for the lock in the driver's thread
        other.execute("COMMIT")
        await writes
        assert await store.events("f") == ["{}", event("f", 2)[2]]  # the stored event 1 stays
        assert ((await store.get_run("f")).last_seq, (await store.get_run("f")).delivered_seq) == (2, 1)
    finally:
        other.close()
        await store.close()


async def test_sqlite_hot_writes_have_the_wal_checkpointed_off_their_path(tmp_path, monkeypatch):
    """Every `checkpoint_every` hot writes a passive checkpoint runs in a worker thread, after
    the write returned. (Whether it copied every frame, so that the next writer restarts the WAL,
    is SQLite's affair: a reader's snapshot can hold a passive checkpoint back.)"""
    checkpointed = asyncio.Event()
    threads: list[threading.Thread] = []
    checkpoint = SqliteDialect._checkpoint

    def recorded(dialect: SqliteDialect) -> None:
        threads.append(threading.current_thread())
        checkpoint(dialect)

    async def signalled(dialect: SqliteDialect) -> None:
        await SqliteDialect._in_thread(dialect, "checkpoint", lambda: recorded(dialect))
        checkpointed.set()

    monkeypatch.setattr(SqliteDialect, "checkpoint_every", 8)
    monkeypatch.setattr(SqliteDialect, "checkpoint", signalled)
    store = sqlite_store(tmp_path)
    await store.open()
    try:
        await store.create_run(new_run("f"))  # the 1st hot write
        for seq in range(1, 7):
            await store.commit(Commit(events=[event("f", seq)]))
        await asyncio.sleep(0.05)
        assert not threads  # 7 hot writes: none yet
        await store.mark_delivered("f", 6)  # the 8th: a passive checkpoint starts, in a thread
        await asyncio.wait_for(checkpointed.wait(), 30)
        assert len(threads) == 1 and threads[0] is not threading.current_thread()
        for seq in range(7, 15):  # 8 more hot writes: one more checkpoint
            await store.commit(Commit(events=[event("f", seq)]))
        await asyncio.wait_for(_until(lambda: len(threads) == 2), 30)
        assert (await store.get_run("f")).last_seq == 14
    finally:
        await store.close()


async def test_sqlite_directory_that_cannot_be_made_raises_on_open(tmp_path):
    (tmp_path / "data").write_text("a file where the directory should be")
    store = sqlite_store(tmp_path)
    with pytest.raises(RunStoreError, match=r"open failed \(SQLite .*\): FileExistsError"):
        await store.open()
    with pytest.raises(RunStoreError, match="not open"):
        await store.get_run("f")


# -- PostgreSQL --------------------------------------------------------------------------------


async def test_postgres_database_gone_raises_without_the_password(postgres_database):
    store = SqlRunStore.postgres(postgres_database.url)
    await store.open()
    try:
        await store.create_run(new_run("f"))
        postgres_database.drop()  # its connections are terminated, as when the server stops
        with pytest.raises(
            RunStoreError, match=r"commit failed \(PostgreSQL database test_\w+ on 127\.0\.0\.1:\d+\)"
        ) as failed:
            await store.commit(Commit(events=[event("f", 1)]))
        with pytest.raises(RunStoreError, match="get_run failed") as failed_read:
            await store.get_run("f")
        password = make_url(postgres_database.url).password
        for error in (failed.value, failed_read.value):
            assert password and password not in str(error)
    finally:
        await store.close()


async def test_postgres_server_stopped_raises_then_the_store_recovers_when_it_is_back():
    server = EmbeddedPostgres()  # a server of this test's own
    try:
        store = SqlRunStore.postgres(await asyncio.to_thread(server.start))
        await store.open()
        try:
            await store.create_run(new_run("f"))
            await asyncio.to_thread(server.stop)
            with pytest.raises(
                RunStoreError, match=r"commit failed \(PostgreSQL database postgres on 127\.0\.0\.1"
            ) as failed:
                await store.commit(Commit(events=[event("f", 1)]))
            assert server.password not in str(failed.value)
            await asyncio.to_thread(server.start)
            await store.commit(Commit(events=[event("f", 1)]))  # pooled connections were pinged, and replaced
            assert (await store.get_run("f")).last_seq == 1
        finally:
            await store.close()
    finally:
        await asyncio.to_thread(server.remove)


async def test_postgres_commits_and_confirmations_never_wait_on_each_others_rows(postgres_database):
    """A coordinator's commit of events writes no `runs` row, and the streamer's confirmations
    only `deliveries`: neither waits while another transaction holds the other's rows."""
    store = SqlRunStore.postgres(postgres_database.url)
    await store.open()
    other = await asyncpg.connect(postgres_database.url)
    try:
        await store.create_run(new_run("f"))
        async with other.transaction():
            await other.execute("SELECT 1 FROM runs WHERE flow_id = 'f' FOR UPDATE")
            await asyncio.wait_for(store.commit(Commit(events=[event("f", 1)])), 10)
            await asyncio.wait_for(store.mark_delivered("f", 1), 10)
        async with other.transaction():
            await other.execute("UPDATE deliveries SET delivered_seq = delivered_seq WHERE flow_id = 'f'")
            await asyncio.wait_for(store.commit(Commit(events=[event("f", 2), event("f", 3)])), 10)
        record = await store.get_run("f")
        assert (record.last_seq, record.delivered_seq) == (3, 1)
    finally:
        await other.close()
        await store.close()


async def test_postgres_connections_terminated_cost_a_reconnect_not_an_error(postgres_database):
    store = SqlRunStore.postgres(postgres_database.url)
    await store.open()
    admin = await asyncpg.connect(postgres_database.url)
    try:
        await store.create_run(new_run("f"))
        await store.commit(Commit(events=[event("f", 1)]))  # the hot writes' connection
        assert (await store.get_run("f")).last_seq == 1  # and a pooled one
        for _ in range(2):
            ended = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert ended >= 2
            await store.commit(Commit(events=[event("f", 2)]))
            await store.mark_delivered("f", 2)
            assert (await store.get_run("f")).delivered_seq == 2
            assert await store.create_run(new_run(f"g{_}"))
    finally:
        await admin.close()
        await store.close()


async def test_postgres_unreachable_raises_on_open_without_the_password():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        store = SqlRunStore.postgres(f"postgresql://runs:hunter2-secret@127.0.0.1:{port}/runs")
        with pytest.raises(
            RunStoreError, match=r"open failed \(PostgreSQL database runs on 127\.0\.0\.1:\d+\)"
        ) as failed:
            await store.open()
    assert "hunter2" not in str(failed.value)


# -- the factory -------------------------------------------------------------------------------


async def test_open_run_store_picks_the_configured_backend(tmp_path, postgres_database):
    def settings(**values) -> Settings:
        return Settings(_env_file=None, **{"run_store": None, "run_store_url": None, **values})

    assert isinstance(open_run_store(settings(run_store="memory")), MemoryRunStore)

    sqlite_default = open_run_store(settings(data_dir=str(tmp_path / "d")))
    assert isinstance(sqlite_default, SqlRunStore)
    await sqlite_default.open()
    await sqlite_default.close()
    assert (tmp_path / "d" / "runs.sqlite3").is_file()

    postgres = open_run_store(settings(run_store_url=postgres_database.url))  # a URL alone selects it
    await postgres.open()
    try:
        assert await postgres.create_run(new_run("f"))
    finally:
        await postgres.close()
    asyncpg_url = make_url(postgres_database.url).set(drivername="postgresql+asyncpg")
    assert isinstance(open_run_store(settings(run_store_url=asyncpg_url.render_as_string(False))), SqlRunStore)

    with pytest.raises(RunStoreError, match="needs RUN_STORE_URL"):
        open_run_store(settings(run_store="postgres"))
    with pytest.raises(RunStoreError, match="must be a postgresql:// URL") as wrong:
        open_run_store(settings(run_store_url="mysql://root:hunter2@db/runs"))
    assert "hunter2" not in str(wrong.value)


async def _until(predicate) -> None:
    while not predicate():
        await asyncio.sleep(0.01)


async def test_a_paused_run_is_unfinished_listed_with_what_it_waits_at_and_never_pruned(store):
    await store.create_run(new_run("p", created_at=1.0))
    paused = snapshot("p", "paused")
    paused["waiting"] = [
        {
            "element_id": "approve",
            "prompt": "ok?",
            "input_schema": {},
            "resume_path": "/flows/p/resume",
            "wake_at": None,
        }
    ]
    await store.commit(Commit(runs=[RunUpdate("p", "paused", paused)]))
    (summary,) = (await store.list_runs(status="paused")).runs
    assert summary.flow_id == "p" and summary.waiting == ["approve"] and summary.finished_at is None
    assert [r.flow_id for r in await store.unfinished_runs()] == ["p"]
    assert await store.prune(before=10**12) == 0  # it waits until resumed, timed out or cancelled
    await store.commit(Commit(runs=[finished("p", 5.0)]))
    (summary,) = (await store.list_runs()).runs
    assert summary.status == "completed" and summary.waiting == []

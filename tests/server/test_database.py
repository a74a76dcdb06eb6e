from __future__ import annotations

import asyncio
import contextvars

import httpx
import pytest
from starlette.applications import Starlette
from tortoise.exceptions import OperationalError
from tortoise.migrations.autodetector import MigrationAutodetector
from tortoise.transactions import in_transaction

from server.database import Steps, read_snapshot, run_steps, tortoise_config
from server.models.sequence import current_seq, next_seq, next_seq_steps


async def test_migrations_are_applied_and_match_the_models(db: Starlette) -> None:
    database = db.state.database
    assert await database.pending_migrations() == []
    # A model change without a migration would show here as pending changes.
    apps_config = tortoise_config(database.url)["apps"]
    detector = MigrationAutodetector(database.context.apps, apps_config)
    assert await detector.changes() == []


async def test_sequence_is_strictly_increasing_under_concurrent_writers(db: Starlette) -> None:
    async def take() -> int:
        async with in_transaction() as conn:
            return await next_seq(conn)

    numbers = await asyncio.gather(*(take() for _ in range(40)))
    assert sorted(numbers) == list(range(1, 41))
    async with in_transaction() as conn:
        assert await next_seq(conn, 10) == 50
    assert await current_seq(db.state.database.connection()) == 50


async def test_a_rolled_back_write_does_not_consume_a_visible_number(db: Starlette) -> None:
    try:
        async with in_transaction() as conn:
            await next_seq(conn)
            raise RuntimeError("crash before commit")
    except RuntimeError:
        pass
    assert await current_seq(db.state.database.connection()) == 0


async def test_overlapping_requests_keep_their_database_context(
    client: httpx.AsyncClient,
) -> None:
    # Regression: ``with TortoiseContext`` in the middleware kept one token on
    # the shared context object, and overlapping requests failed with
    # "created in a different Context".
    responses = await asyncio.gather(*(client.get("/health") for _ in range(20)))
    assert {r.status_code for r in responses} == {200}


async def test_commits_are_durable_and_writers_queue(db: Starlette) -> None:
    """SQLite: WAL, a sync of the WAL at every commit (synchronous=FULL, 2),
    and a busy timeout: what an acknowledged write and a second writer rely
    on.  PostgreSQL: a commit returns only once its WAL is flushed."""
    database = db.state.database
    conn = database.connection()
    if database.dialect == "postgres":
        for name in ("fsync", "synchronous_commit"):
            rows = await conn.execute_query_dict(f"SHOW {name}")
            assert rows[0][name] == "on", rows
        return
    pragmas = {name: (await conn.execute_query_dict(f"PRAGMA {name}"))[0]
               for name in ("journal_mode", "synchronous", "busy_timeout")}
    assert [list(p.values())[0] for p in pragmas.values()] == ["wal", 2, 30000]


async def test_a_read_snapshot_does_not_see_a_commit_made_after_its_first_read(
    db: Starlette,
) -> None:
    # What a pull relies on: the counter and the rows of one snapshot.
    database = db.state.database
    async with in_transaction() as conn:
        await next_seq(conn)

    async def write() -> None:
        async with in_transaction() as conn:
            await next_seq(conn)

    outside = contextvars.copy_context()  # a task started inside would join the snapshot
    async with read_snapshot(database.connection()) as conn:
        first = await current_seq(conn)
        writer = asyncio.create_task(write(), context=outside)
        # PostgreSQL: the writer commits meanwhile; SQLite: it waits for the
        # snapshot's lock.
        await asyncio.wait({writer}, timeout=0.5)
        assert await current_seq(conn) == first
        if database.dialect == "postgres":
            assert writer.done()
            for name, value in (("transaction_isolation", "repeatable read"),
                                ("transaction_read_only", "on"), ("enable_sort", "off")):
                rows = await conn.execute_query_dict(f"SHOW {name}")
                assert rows[0][name] == value
    await writer
    assert await current_seq(database.connection()) == first + 1
    if database.dialect == "postgres":  # SET LOCAL: the pooled connection is as it was
        rows = await database.connection().execute_query_dict("SHOW enable_sort")
        assert rows[0]["enable_sort"] == "on"


async def test_a_read_snapshot_ends_whole_when_a_read_fails(db: Starlette) -> None:
    database = db.state.database
    with pytest.raises(OperationalError):
        async with read_snapshot(database.connection()) as conn:
            await conn.execute_query("SELECT no_such_column FROM sync_counter")
    async with read_snapshot(database.connection()) as conn:  # the connection is usable
        assert await current_seq(conn) >= 0


async def test_steps_run_as_one_transaction(db: Starlette) -> None:
    """run_steps: each statement's rows are sent back, the steps' result is
    returned, and what they raise rolls every statement back."""
    conn = db.state.database.connection()

    def steps(fail: bool) -> Steps[int]:
        first = yield from next_seq_steps()
        rows = yield "SELECT value FROM sync_counter WHERE id = 1", []
        assert rows == [{"value": first}]
        second = yield from next_seq_steps(5)
        if fail:
            raise RuntimeError("refused half-way")
        return second

    assert await run_steps(conn, steps(False)) == 6
    with pytest.raises(RuntimeError):
        await run_steps(conn, steps(True))
    assert await current_seq(conn) == 6


async def test_unsynced_steps_commit_and_leave_every_other_commit_synced(
    db: Starlette,
) -> None:
    """run_steps(synced=False) (the tus write lease): its change is committed,
    and every other commit, even one racing it or one after a cancelled call,
    still syncs (SQLite: synchronous back to FULL; PostgreSQL:
    synchronous_commit off for that transaction only)."""
    database = db.state.database
    conn = database.connection()

    async def durable_write() -> int:
        async with in_transaction() as tx:
            return await next_seq(tx)

    results = await asyncio.gather(
        *(run_steps(conn, next_seq_steps(), synced=False) for _ in range(5)),
        *(durable_write() for _ in range(5)),
    )
    assert sorted(results) == list(range(1, 11))
    cancelled = asyncio.ensure_future(run_steps(conn, next_seq_steps(), synced=False))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0.2)
    if database.dialect == "postgres":
        rows = await conn.execute_query_dict("SHOW synchronous_commit")
        assert rows[0]["synchronous_commit"] == "on"
    else:
        assert (await conn.execute_query_dict("PRAGMA synchronous"))[0]["synchronous"] == 2
    assert await current_seq(conn) in (10, 11)

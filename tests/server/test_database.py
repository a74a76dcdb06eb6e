from __future__ import annotations

import asyncio

import httpx
from starlette.applications import Starlette
from tortoise.migrations.autodetector import MigrationAutodetector
from tortoise.transactions import in_transaction

from server.database import tortoise_config
from server.models.sequence import current_seq, next_seq


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

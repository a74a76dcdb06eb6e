"""The sync sequence: one counter, advanced inside every writing transaction.

Every synced row carries the number its last write took (``updated_seq``).
The counter row is updated inside the writer's transaction, so on PostgreSQL
its row lock is held until commit: numbers are handed out in commit order and
a reader never sees number N committed while a smaller one is still pending.
SQLite has one writer at a time, which gives the same order.  This is why the
cursor is this number and never a clock (DESIGN.md, "Sync protocol").
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from tortoise import fields
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.models import Model

COUNTER_ID = 1


class SyncCounter(Model):
    id = fields.IntField(primary_key=True)
    value = fields.BigIntField(default=0)

    class Meta:
        table = "sync_counter"


# Placeholders differ per dialect; the values are integers we control.
def _advance_sql(count: int) -> str:
    return (f"UPDATE sync_counter SET value = value + {int(count)} "
            f"WHERE id = {COUNTER_ID} RETURNING value")


_CREATE_SQL = (
    f"INSERT INTO sync_counter (id, value) VALUES ({COUNTER_ID}, 0) ON CONFLICT (id) DO NOTHING"
)


async def next_seq(connection: BaseDBAsyncClient, count: int = 1) -> int:
    """Reserve ``count`` numbers and return the last; call inside a transaction.

    The first call on an empty database creates the counter row.
    """
    rows = await connection.execute_query_dict(_advance_sql(count))
    if rows:
        return int(rows[0]["value"])
    await connection.execute_query(_CREATE_SQL)
    return await next_seq(connection, count)


def next_seq_steps(count: int = 1) -> Generator[tuple[str, list[Any]], list[dict[str, Any]], int]:
    """``next_seq`` as steps of a ``database.run_steps`` transaction
    (``seq = yield from next_seq_steps()``)."""
    rows = yield _advance_sql(count), []
    if not rows:
        yield _CREATE_SQL, []
        rows = yield _advance_sql(count), []
    return int(rows[0]["value"])


async def current_seq(connection: BaseDBAsyncClient) -> int:
    rows = await connection.execute_query_dict(
        f"SELECT value FROM sync_counter WHERE id = {COUNTER_ID}"
    )
    return int(rows[0]["value"]) if rows else 0


async def lock_writers(connection: BaseDBAsyncClient) -> None:
    """Take the counter's row lock now, for the rest of the transaction.

    A sync push reads records, decides (conflict? replay?) and then writes.
    On PostgreSQL two pushes could otherwise both read the old version and
    the second would overwrite the first without a conflict (or both create
    the same id).  Holding the counter lock from the start serialises writers,
    as SQLite does anyway.  Call first thing in the transaction.
    """
    if connection.capabilities.dialect != "postgres":
        return
    await connection.execute_query(
        f"INSERT INTO sync_counter (id, value) VALUES ({COUNTER_ID}, 0) ON CONFLICT (id) DO NOTHING"
    )
    await connection.execute_query(
        f"SELECT value FROM sync_counter WHERE id = {COUNTER_ID} FOR UPDATE"
    )

"""The database: Tortoise configuration, an owned context, and migrations.

The app owns one ``TortoiseContext`` rather than Tortoise's global state, and
``DatabaseContextMiddleware`` makes it current for each request.  Several apps
(tests, benchmarks) can live in one process, each with its own database.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from starlette.types import ASGIApp, Receive, Scope, Send
from tortoise import context as tortoise_context
from tortoise.backends.asyncpg.client import AsyncpgDBClient, TransactionWrapper
from tortoise.backends.base.client import (
    BaseDBAsyncClient,
    TransactionContext,
    TransactionContextPooled,
)
from tortoise.backends.sqlite.client import SqliteClient
from tortoise.context import TortoiseContext
from tortoise.exceptions import TransactionManagementError
from tortoise.migrations.executor import MigrationExecutor
from tortoise.transactions import in_transaction

from server.models import MODEL_MODULES

APP_LABEL = "models"
MIGRATIONS_MODULE = "server.migrations"
SQLITE_SYNCHRONOUS = "FULL"
_T = TypeVar("_T")


def tortoise_config(database_url: str, pool_size: int | None = None) -> dict[str, Any]:
    connection: str | dict[str, Any] = database_url
    if pool_size is not None and not database_url.startswith("sqlite://") \
            and "maxsize=" not in database_url:
        # asyncpg's pool: Tortoise reads maxsize from the URL's query.
        sep = "&" if "?" in database_url else "?"
        connection = f"{database_url}{sep}maxsize={int(pool_size)}"
    if database_url.startswith("sqlite://"):
        # WAL lets readers go on while one writer writes; transactions begin
        # IMMEDIATE and a busy timeout makes a writer of another process (a
        # CLI command beside the server) wait (queue) instead of failing with
        # "database is locked" (server/sqlite_client.py).
        # synchronous=FULL syncs the WAL at every commit: a commit that was
        # acknowledged survives a power cut, not only a killed process.
        # The server has one connection: a 64 MiB page cache (SQLite's default
        # is 2 MiB) keeps the hot index pages a sync push of 500 records
        # touches, instead of reading them again through the OS each batch.
        path = database_url[len("sqlite://") :]
        connection = {
            "engine": "server.sqlite_client",
            "credentials": {
                "file_path": path,
                "journal_mode": "WAL",
                "synchronous": SQLITE_SYNCHRONOUS,
                "journal_size_limit": 16 * 1024 * 1024,
                "foreign_keys": "ON",
                "busy_timeout": 30000,
                "cache_size": -64 * 1024,  # KiB
            },
        }
    return {
        "connections": {"default": connection},
        "apps": {
            APP_LABEL: {
                "models": MODEL_MODULES,
                "default_connection": "default",
                "migrations": MIGRATIONS_MODULE,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


# A statement (SQL with the dialect's placeholders, and its values), and a
# transaction written as a generator of them: it yields each statement, is
# sent back the statement's rows, and returns its result (``run_steps``).
Statement = tuple[str, Sequence[Any]]
Steps = Generator[Statement, list[dict[str, Any]], _T]


async def run_steps(client: BaseDBAsyncClient, steps: Steps[_T], *, synced: bool = True) -> _T:
    """Run ``steps`` in one transaction and return what they return; what
    they raise rolls the transaction back and is raised.

    SQLite runs the whole transaction in one call to the connection's thread,
    under the connection's lock: a round trip to that thread for each
    statement costs 0.1 to 10 ms on a busy machine, and the steps (plain
    Python between statements) are cheap.  PostgreSQL runs a statement at a
    time.

    ``synced=False``: the commit need not survive a power cut, so it does not
    wait for the disk (a lease: after a power cut its holder is gone as well).
    A crash of the process loses nothing even so, and the next synced commit
    syncs it too.  SQLite: ``synchronous`` NORMAL around this transaction only
    (set back in the same call, so no other commit ever runs at that level);
    PostgreSQL: ``synchronous_commit`` off for this transaction."""
    if isinstance(client, SqliteClient):
        async with client.acquire_connection() as connection:
            # aiosqlite's _execute (no public call runs a function in the
            # connection's thread; pinned in requirements.lock, and
            # tests/server/test_database.py runs it): each call is queued to
            # that thread and runs whole, so no other statement runs inside
            # this transaction, even if this coroutine is cancelled meanwhile.
            return await connection._execute(_run_steps, connection._conn, steps, synced)
    async with in_transaction(client.connection_name) as conn:
        if not synced:
            await conn.execute_query("SET LOCAL synchronous_commit TO OFF")
        rows: list[dict[str, Any]] | None = None
        try:
            while True:
                sql, values = next(steps) if rows is None else steps.send(rows)
                rows = await conn.execute_query_dict(sql, list(values))
        except StopIteration as done:
            result: _T = done.value
            return result


# One round trip (a simple query may hold several statements).  Every query
# of a pull page has an index in its ORDER BY: a sort is never the better plan,
# but without statistics (a table just filled, before autovacuum's ANALYZE)
# PostgreSQL estimates a handful of rows and sorts the user's whole history
# for each page of 500 instead of reading the index in order.
_SNAPSHOT_BEGIN = ("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; "
                   "SET LOCAL enable_sort = off")


class _SnapshotWrapper(TransactionWrapper):
    """Tortoise's pooled transaction, begun with ``_SNAPSHOT_BEGIN`` (so
    ended with plain COMMIT and ROLLBACK: asyncpg's Transaction is not used)."""

    async def begin(self) -> None:
        await self._connection.execute(_SNAPSHOT_BEGIN)

    async def commit(self) -> None:
        await self._end("COMMIT")

    async def rollback(self) -> None:
        await self._end("ROLLBACK")

    async def _end(self, sql: str) -> None:
        if self._finalized:
            raise TransactionManagementError("Transaction already finalised")
        self._finalized = True
        await self._connection.execute(sql)


def read_snapshot(client: BaseDBAsyncClient) -> TransactionContext:
    """``in_transaction()`` for the reads of a sync pull page, which must
    agree with each other (the counter and the rows).  PostgreSQL: a
    REPEATABLE READ, READ ONLY transaction begun in one round trip (where
    ``BEGIN`` and then ``SET TRANSACTION`` were two), with sorts off
    (``_SNAPSHOT_BEGIN``).  SQLite: a transaction sees one snapshot already."""
    if isinstance(client, AsyncpgDBClient):
        return TransactionContextPooled(_SnapshotWrapper(client), client._pool_init_lock)
    return client._in_transaction()


def _run_steps(conn: sqlite3.Connection, steps: Steps[_T], synced: bool) -> _T:
    """``run_steps`` on SQLite, in the connection's thread."""
    if not synced:
        conn.execute("PRAGMA synchronous = NORMAL")
    try:
        if conn.in_transaction:  # left open by someone: end it, as Tortoise does
            conn.commit()
        conn.execute("BEGIN IMMEDIATE")
        try:
            rows: list[dict[str, Any]] | None = None
            while True:
                sql, values = next(steps) if rows is None else steps.send(rows)
                cursor = conn.execute(sql, list(values))
                names = [column[0] for column in cursor.description or ()]
                rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        except StopIteration as done:
            conn.execute("COMMIT")
            result: _T = done.value
            return result
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        if not synced:
            conn.execute(f"PRAGMA synchronous = {SQLITE_SYNCHRONOUS}")


class Database:
    """One database: opened by the lifespan, made current per request."""

    def __init__(self, url: str, pool_size: int | None = None) -> None:
        self.url = url
        self.pool_size = pool_size
        self.context = TortoiseContext()

    @property
    def dialect(self) -> str:
        return "sqlite" if self.url.startswith("sqlite://") else "postgres"

    @property
    def sqlite_path(self) -> str | None:
        """The database file of a SQLite database (None for PostgreSQL or in memory)."""
        path = self.url[len("sqlite://") :] if self.dialect == "sqlite" else ""
        return path if path and path != ":memory:" else None

    async def open(self) -> None:
        with self.context:
            await self.context.init(config=tortoise_config(self.url, self.pool_size))

    async def close(self) -> None:
        await self.context.close_connections()

    @contextmanager
    def current(self) -> Iterator[None]:
        """Make this database current in the running context.

        ``with self.context:`` is not safe for concurrent requests: a
        ``TortoiseContext`` keeps the contextvar token of its *last* entry on
        the instance, so overlapping requests reset each other's token
        ("created in a different Context").  Each entry keeps its own token here.
        """
        token = tortoise_context._current_context.set(self.context)
        try:
            yield
        finally:
            tortoise_context._current_context.reset(token)

    def connection(self) -> BaseDBAsyncClient:
        return self.context.db()

    async def migrate(self, progress: Callable[[str, str, str], object] | None = None) -> None:
        """Apply every pending migration (``phenosync migrate``; ``serve`` at start)."""
        with self.context:
            config = tortoise_config(self.url)
            executor = MigrationExecutor(self.connection(), config["apps"])
            await executor.migrate(None, progress=progress)

    async def pending_migrations(self) -> list[str]:
        with self.context:
            config = tortoise_config(self.url)
            executor = MigrationExecutor(self.connection(), config["apps"])
            plan = await executor.plan(None)
            return [f"{s.migration.app_label}.{s.migration.name}" for s in plan if not s.backward]


class DatabaseContextMiddleware:
    """Pure ASGI middleware: runs each request with the app's database current."""

    def __init__(self, app: ASGIApp, database: Database) -> None:
        self.app = app
        self.database = database

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        with self.database.current():
            await self.app(scope, receive, send)

"""The database: Tortoise configuration, an owned context, and migrations.

The app owns one ``TortoiseContext`` rather than Tortoise's global state, and
``DatabaseContextMiddleware`` makes it current for each request.  Several apps
(tests, benchmarks) can live in one process, each with its own database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from tortoise import context as tortoise_context
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.context import TortoiseContext
from tortoise.migrations.executor import MigrationExecutor

from server.models import MODEL_MODULES

APP_LABEL = "models"
MIGRATIONS_MODULE = "server.migrations"


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
        path = database_url[len("sqlite://") :]
        connection = {
            "engine": "server.sqlite_client",
            "credentials": {
                "file_path": path,
                "journal_mode": "WAL",
                "synchronous": "FULL",
                "journal_size_limit": 16 * 1024 * 1024,
                "foreign_keys": "ON",
                "busy_timeout": 30000,
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

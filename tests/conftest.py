"""Test fixtures: every database test runs on SQLite and, when
``PHENOSYNC_TEST_POSTGRES_URL`` is set, on PostgreSQL too.

The app (and its database, migrated with the real migrations) is built once
per backend per session; every test starts from empty tables.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from tortoise import context as tortoise_context
from tortoise.backends.base.executor import EXECUTOR_CACHE

from server.app import create_app
from server.database import Database
from server.settings import Settings
from tests.s3server import S3Server, start_s3_server

POSTGRES_URL = os.environ.get("PHENOSYNC_TEST_POSTGRES_URL", "")
BACKENDS = ["sqlite", "postgres"] if POSTGRES_URL else ["sqlite"]


def _pg_url(database: str) -> str:
    base, _, _ = POSTGRES_URL.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
async def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite database with every migration applied, made once per
    session: a test that needs a fresh one copies the file (``copy_sqlite``)
    rather than running the migrations again (about 1.5 s of CPU each;
    tests/server/test_database.py runs them from scratch)."""
    path = tmp_path_factory.mktemp("template") / "migrated.sqlite3"
    database = Database(f"sqlite://{path}")
    await database.open()
    try:
        await database.migrate()
    finally:
        await database.close()  # the last connection: the WAL is checkpointed into the file
    return path


def copy_sqlite(template: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, target)
    return target


@pytest.fixture(scope="session")
async def database_url(
    backend: str, tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> AsyncIterator[str]:
    if backend == "sqlite":
        path = copy_sqlite(sqlite_template, tmp_path_factory.mktemp("db") / "test.sqlite3")
        yield f"sqlite://{path}"
        return
    # One fresh database per session: parallel runs never share state.
    name = f"phenosync_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(POSTGRES_URL.replace("postgres://", "postgresql://", 1))
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _pg_url(name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    data_dir = tmp_path_factory.mktemp("data")
    return Settings.from_env(
        {
            "PHENOSYNC_DATA_DIR": str(data_dir),
            "PHENOSYNC_DATABASE_URL": database_url,
            "PHENOSYNC_MAX_BODY_BYTES": str(64 * 1024),
            # The whole suite shares one app; rate limits have their own tests.
            "PHENOSYNC_RATE_LIMIT_PER_MINUTE": "1000000",
            # No background workers in the shared test app: tests run due jobs
            # themselves (``jobs.drain``), so they are deterministic.
            "PHENOSYNC_JOB_WORKERS": "0",
        }
    )


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    # Tortoise caches INSERT statements per connection name, not per dialect:
    # start each backend's session with an empty cache.
    EXECUTOR_CACHE.clear()
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        database = application.state.database
        await database.migrate()
        # Tests call the ORM directly, outside any request: make this app's
        # database the fallback context for the session.
        tortoise_context.set_global_context(database.context)
        try:
            yield application
        finally:
            tortoise_context._global_context = None


@pytest.fixture
async def db(app: Starlette) -> AsyncIterator[Starlette]:
    """Empty tables (and a restarted sequence) before the test."""
    database = app.state.database
    conn = database.connection()
    tables = sorted(
        model._meta.db_table
        for models in database.context.apps.values()
        for model in models.values()
    )
    if database.dialect == "postgres":
        await conn.execute_script(
            "TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"
        )
    else:
        script = "PRAGMA foreign_keys = OFF;"
        script += "".join(f'DELETE FROM "{t}";' for t in tables)
        script += "DELETE FROM sqlite_sequence; PRAGMA foreign_keys = ON;"
        await conn.execute_script(script)
    yield app


@pytest.fixture
async def client(db: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=db)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def tmp_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    yield {"PHENOSYNC_DATA_DIR": str(tmp_path / "data")}


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real S3-compatible server (moto_server) on a loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = start_s3_server(port)
    try:
        yield server
    finally:
        server.process.terminate()
        server.process.wait(10)

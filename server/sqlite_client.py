"""Tortoise's SQLite client, with write transactions that queue instead of failing.

SQLite has one writer.  Inside one process Tortoise already queues: the
process has one connection and every transaction holds an ``asyncio.Lock``.
A second process on the same file (``phenosync publish`` or ``recheck`` run
beside the server, a backup) contends through SQLite's own lock, and there
Tortoise's plain ``BEGIN`` is the trap: a deferred transaction that read
first and writes second cannot wait for the lock (its snapshot would be
stale), so SQLite answers ``SQLITE_BUSY`` at once, whatever the busy
timeout — "database is locked".  ``BEGIN IMMEDIATE`` takes the write lock at
the start, where the busy timeout (30 s, ``server.database``) makes it wait.

Tortoise loads a backend module by name and uses its ``client_class``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
from pathlib import Path
from typing import IO

from tortoise.backends.base.client import TransactionContext
from tortoise.backends.sqlite.client import (
    SqliteClient,
    SqliteTransactionContext,
    SqliteTransactionWrapper,
)
from tortoise.exceptions import TransactionManagementError

log = logging.getLogger("phenosync.database")


class ImmediateTransactionWrapper(SqliteTransactionWrapper):
    async def begin(self) -> None:
        try:
            # Tortoise commits first, always, in case a transaction was left
            # open; only then is there anything to commit (a round trip to
            # the database thread saved on every transaction).
            if self._connection.in_transaction:
                await self._connection.commit()
            await self._connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise TransactionManagementError(exc) from exc


class ImmediateSqliteClient(SqliteClient):
    """``in_transaction()`` starts with ``BEGIN IMMEDIATE``; the rest is Tortoise's."""

    def _in_transaction(self) -> TransactionContext:
        return SqliteTransactionContext(ImmediateTransactionWrapper(self), self._lock)


client_class = ImmediateSqliteClient


class ServerLock:
    """An advisory lock saying "a server process serves this SQLite file".

    One server process per SQLite database is the supported configuration
    (docs/operations.md): its writers queue on one connection, fairly and
    without a timeout.  Several processes would poll SQLite's lock instead,
    unfairly, and under sustained load a writer can wait past the busy
    timeout and fail with "database is locked".  ``phenosync serve``
    refuses ``--workers`` above one for SQLite; this lock catches the other
    ways (``uvicorn --workers``, two services on one data dir) with a
    warning.  The kernel drops the lock when the process ends, however.
    """

    def __init__(self, database_path: str) -> None:
        self.path = Path(database_path + ".server-lock")
        self._handle: IO[str] | None = None

    def acquire(self) -> bool:
        """True when this is the only server process; False after logging a warning."""
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            log.warning(
                "Another server process serves this SQLite database (%s). Run one process "
                "on SQLite: several contend for its single writer and can fail with "
                "'database is locked' under load. Use PostgreSQL for several workers.",
                self.path.with_suffix(""),
                extra={"fields": {"event": "sqlite_second_server", "pid": os.getpid()}},
            )
            return False
        self._handle = handle
        return True

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

"""SQLite with two connections on one file, as two processes would have them:
writers queue instead of failing with "database is locked"."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from tortoise.transactions import in_transaction

from server.database import Database
from server.sqlite_client import ServerLock


async def test_read_then_write_transactions_of_two_connections_queue(tmp_path: Path) -> None:
    # A deferred BEGIN fails here: the transaction that read before the other
    # committed cannot take the write lock, busy timeout or not.
    url = f"sqlite://{tmp_path / 'shared.sqlite3'}"
    first, second = Database(url), Database(url)
    await first.open()
    await second.open()
    try:
        await first.connection().execute_script(
            "CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL);"
            "INSERT INTO counter VALUES (1, 0);")

        async def bump(database: Database, times: int) -> None:
            with database.current():
                for _ in range(times):
                    async with in_transaction() as conn:
                        rows = await conn.execute_query_dict("SELECT n FROM counter")
                        await asyncio.sleep(0.001)  # the other connection runs meanwhile
                        await conn.execute_query("UPDATE counter SET n = ?", [rows[0]["n"] + 1])

        await asyncio.gather(bump(first, 30), bump(second, 30))
        rows = await first.connection().execute_query_dict("SELECT n FROM counter")
        assert rows[0]["n"] == 60  # no error, and no update lost
    finally:
        await first.close()
        await second.close()


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_second_server_on_one_sqlite_file_is_warned_about(tmp_path: Path) -> None:
    path = str(tmp_path / "one.sqlite3")
    one, two = ServerLock(path), ServerLock(path)
    logger = logging.getLogger("phenosync.database")
    kept = Kept()
    logger.addHandler(kept)
    try:
        assert one.acquire()
        assert not two.acquire()
        one.release()
        assert two.acquire()  # the first is gone: the next server is alone again
        two.release()
    finally:
        logger.removeHandler(kept)
    warnings = kept.records
    assert len(warnings) == 1
    assert "database is locked" in warnings[0].getMessage()

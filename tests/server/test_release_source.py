"""The release source reads SQLite in a child process: the server's own locks
on its database survive an export (exports/arrow_reader.py says why)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from tortoise.backends.base.executor import EXECUTOR_CACHE

from server.database import Database
from server.releases import publish
from server.settings import Settings
from tests.conftest import copy_sqlite
from tests.factories import make_project, make_user
from tests.factories_observations import make_observation, make_phenophase, make_taxon

# In another process: can it take the WAL index's "DMS" byte exclusively?  A
# process with the database open holds a shared lock on it (SQLite's unix VFS:
# byte 128 of the -shm file), so it can not while the server's lock holds.
_LOCK_PROBE = """
import fcntl, os, sys
fd = os.open(sys.argv[1] + "-shm", os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 128)
except OSError:
    sys.exit(1)
sys.exit(0)
"""
# In another process, as the CLI would: open, count, close.
_COUNT = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
print(con.execute("SELECT count(*) FROM observations").fetchone()[0])
con.close()
"""


async def _python(code: str, path: Path) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", code, str(path)], capture_output=True, text=True
    )


async def test_an_export_keeps_the_servers_sqlite_locks_and_other_processes_see_its_writes(
    sqlite_template: Path, tmp_path: Path
) -> None:
    path = copy_sqlite(sqlite_template, tmp_path / "server.sqlite3")
    settings = Settings.from_env({
        "PHENOSYNC_DATA_DIR": str(tmp_path / "data"),
        "PHENOSYNC_DATABASE_URL": f"sqlite://{path}",
        "PHENOSYNC_SECRET_KEY": "test",
    })
    # Tortoise caches INSERT statements per connection name, not per dialect.
    EXECUTOR_CACHE.clear()
    database = Database(settings.database_url)
    await database.open()
    try:
        with database.context:
            project = await make_project()
            user, _ = await make_user(project=project)
            taxon, phase = await make_taxon(), await make_phenophase()
            for _ in range(2):
                await make_observation(user, project, taxon, phase)
            assert (await _python(_LOCK_PROBE, path)).returncode == 1  # the probe works

            release = await publish(settings, database)
            assert release.observation_count == 2

            # The server's shared lock on the WAL index is still held ...
            assert (await _python(_LOCK_PROBE, path)).returncode == 1
            # ... so a process that opens and closes the database is not the
            # last one (it would checkpoint and delete the WAL under the
            # server), and sees the server's later writes.
            assert (await _python(_COUNT, path)).stdout.strip() == "2"
            await make_observation(user, project, taxon, phase)
            assert (await _python(_COUNT, path)).stdout.strip() == "3"
    finally:
        await database.close()
        EXECUTOR_CACHE.clear()

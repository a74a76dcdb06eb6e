"""The load benchmark, short (bench/load_bench.py): 20 devices of the reference
client for 10 s against ``phenosync serve`` in a child process, on SQLite (the
embedded default, one process) and on PostgreSQL with 4 workers.  Zero errors,
zero lost records, every completed photo upload there, no "database is locked"
in the server log.  The full run (200 devices, minutes) writes
bench/load_report.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.load_bench import LoadConfig, create_database, drop_database, run_load
from tests.conftest import BACKENDS, POSTGRES_URL


@pytest.mark.parametrize("store", BACKENDS)
async def test_devices_syncing_at_once_get_no_errors_and_lose_nothing(
    store: str, tmp_path: Path
) -> None:
    postgres = store == "postgres"
    config = LoadConfig(devices=20, users=15, duration=10.0, think=0.5,
                        workers=4 if postgres else 1)
    url = await create_database(POSTGRES_URL) if postgres else None
    try:
        outcome = await run_load(store, url, config, tmp_path, progress=lambda _: None,
                                 photo_timeout=60.0)
    finally:
        if url is not None:
            await drop_database(POSTGRES_URL, url)
    assert outcome.errors == []
    assert outcome.failures == []
    assert outcome.lost == 0
    # The run did what it is for: records and photos went through, and a
    # verification that found nothing to check would not count.
    assert outcome.acknowledged > 100
    assert outcome.photos > 0
    assert sum(outcome.requests.values()) > 100

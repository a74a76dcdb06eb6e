"""A real client: WatermelonDB's own ``synchronize()`` against the server.

The server runs under uvicorn (``server.app:create_app``) on a loopback port
in its own process, on the test database of the session's backend (SQLite,
and PostgreSQL when ``PHENOSYNC_TEST_POSTGRES_URL`` is set), with a fresh data
directory.  Node runs ``watermelondb/sync_scenario.js`` (two in-memory LokiJS
databases of one user); afterwards this test checks the server's database.
The npm packages are installed by ``make node-deps`` (``npm ci``).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette

from server.models.observations import Observation, Photo
from tests.factories import make_user
from tests.factories_sync import World, make_world
from tests.servers import uvicorn_child

HERE = Path(__file__).resolve().parent / "watermelondb"
SCENARIO = HERE / "sync_scenario.js"
START_TIMEOUT_S = 30
SCENARIO_TIMEOUT_S = 60


@dataclass
class LiveServer:
    url: str


def node() -> str:
    found = shutil.which("node")
    assert found, "node is not installed (Node 20: see .ci/run)"
    assert (HERE / "node_modules" / "@nozbe" / "watermelondb").is_dir(), (
        "run `make node-deps` (npm ci in tests/sync/watermelondb) first"
    )
    return found


@pytest.fixture
async def live_server(
    db: Starlette, tmp_path: Path
) -> AsyncIterator[LiveServer]:
    """uvicorn in a child process, on this session's (migrated, emptied) database."""
    settings = db.state.settings
    env = {
        "PHENOSYNC_DATA_DIR": str(tmp_path / "data"),
        "PHENOSYNC_DATABASE_URL": settings.database_url,
        "PHENOSYNC_LOG_LEVEL": "warning",
    }
    async with uvicorn_child(env, start_timeout=START_TIMEOUT_S) as url:
        yield LiveServer(url)


async def run_scenario(
    server: LiveServer, token: str, result_file: Path, flags: str
) -> dict[str, Any]:
    env = {
        **os.environ,
        "PHENOSYNC_URL": server.url,
        "PHENOSYNC_TOKEN": token,
        "PHENOSYNC_RESULT_FILE": str(result_file),
        "PHENOSYNC_PAGE_SIZE": "20",
        "PHENOSYNC_FLAGS": flags,
    }
    proc = await asyncio.create_subprocess_exec(
        node(), str(SCENARIO), cwd=HERE, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), SCENARIO_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        raise AssertionError("the scenario did not finish:\n" + out.decode()) from None
    assert proc.returncode == 0, out.decode()
    result: dict[str, Any] = json.loads(await asyncio.to_thread(result_file.read_text))
    return result


# "default": WatermelonDB's default flags.  The server sends a device's own
# pushes back as "updated" (by X-Device-Id), so the echo cannot recreate a
# record the device deleted after pushing it.
@pytest.mark.parametrize("flags", ["created-as-updated", "default"])
async def test_watermelondb_synchronize_two_devices(
    live_server: LiveServer, tmp_path: Path, flags: str
) -> None:
    world: World = await make_world()
    user, token = await make_user("volunteer", project=world.project)

    result = await run_scenario(live_server, token, tmp_path / "result.json", flags)

    # What the second device ended with is what the server holds.
    live = {o.id: o for o in await Observation.filter(user_id=user.id, is_deleted=False)}
    assert set(live) == set(result["observations"])
    for oid, record in result["observations"].items():
        row = live[oid]
        assert row.notes == record["notes"]
        assert str(row.status) == record["status"]
        assert row.intensity == (record["intensity"] or None)
        assert row.latitude == record["latitude"]
        assert str(row.review_status) == record["review_status"]
    # Tombstone kept for the record deleted after it reached the server; the
    # ones deleted before sync or rejected never made a row.
    deleted = await Observation.filter(id__in=result["deleted_on_server"]).values_list(
        "id", "is_deleted"
    )
    assert sorted(deleted) == sorted((i, True) for i in result["deleted_on_server"])
    assert not await Observation.filter(id__in=result["never_on_server"]).exists()
    assert await Observation.all().count() == len(live) + len(result["deleted_on_server"])
    photos = await Photo.filter(user_id=user.id).values_list("id", flat=True)
    assert sorted(photos) == sorted(result["photos"])
    assert result["watermelon_errors"] == []
    # Every change was made by one of the two devices.
    devices = set(await Observation.all().values_list("client_changed_device", flat=True))
    assert devices <= set(result["device_ids"])
    # The phone sends push_count, the tablet does not: each record keeps the
    # stamp of the push that wrote it.
    phone, tablet = result["device_ids"]
    stamps = await Observation.all().values_list(
        "client_changed_device", "client_changed_pulled_at", "client_changed_push")
    assert {push > 0 for device, _, push in stamps if device == phone} == {True}
    assert {push for device, _, push in stamps if device == tablet} == {0}
    assert all(pulled_at is not None and pulled_at > 0 for _, pulled_at, _ in stamps)

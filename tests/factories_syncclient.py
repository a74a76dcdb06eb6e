"""Factories for tests of the reference client: devices on a faulty wire, and the
checks every fault scenario ends with."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.applications import Starlette

from server.models.observations import Observation
from sync.client import RetryPolicy, SyncClient
from tests.factories_sync import World, observation
from tests.faults import FaultyTransport

# Fast and deterministic: no real sleeping in tests, a seeded jitter.
FAST_RETRY = RetryPolicy(attempts=5, base_delay=0.01, max_delay=0.05)


async def no_sleep(_: float) -> None:
    return None


@dataclass
class Phone:
    """A device under test: the reference client and the wire it talks over."""

    client: SyncClient
    wire: FaultyTransport
    token: str
    user_id: int


@asynccontextmanager
async def phones(app: Starlette, users: Iterable[tuple[int, str]], *,
                 batch_size: int = 500, page_size: int = 500) -> AsyncIterator[list[Phone]]:
    """One :class:`Phone` per ``(user_id, token)``; repeat a user for several devices."""
    async with AsyncExitStack() as stack:
        out = []
        for n, (user_id, token) in enumerate(users):
            wire = FaultyTransport(httpx.ASGITransport(app=app))
            client = SyncClient(
                "http://testserver", token, transport=wire, retry=FAST_RETRY, sleep=no_sleep,
                rng=random.Random(n), batch_size=batch_size, page_size=page_size,
                device_id=f"device{n:02d}",
            )
            await stack.enter_async_context(client)
            out.append(Phone(client, wire, token, user_id))
        yield out


def new_observation(world: World, **overrides: Any) -> dict[str, Any]:
    """Values of an observation as the app records it (no id: the client makes one)."""
    values = observation(world, **overrides)
    del values["id"]
    return values


async def sync_to_quiescence(devices: Iterable[Phone], rounds: int = 6) -> None:
    """Sync every device in turn until a whole round moves nothing."""
    devices = list(devices)
    for _ in range(rounds):
        reports = [await d.client.sync() for d in devices]
        if all(r.push.pushed == 0 for r in reports):
            return
    raise AssertionError("devices did not reach quiescence")


async def server_view(app: Starlette, token: str) -> dict[str, dict[str, dict[str, Any]]]:
    """What a fresh install of ``token``'s user would pull: table -> id -> record."""
    async with SyncClient("http://testserver", token,
                          transport=httpx.ASGITransport(app=app)) as fresh:
        await fresh.sync()
        return {t: {r["id"]: r for r in await fresh.records(t)} for t in TABLE_NAMES}


TABLE_NAMES = ("projects", "taxa", "phenophases", "observations", "photos")


async def assert_converged(app: Starlette, devices: Iterable[Phone],
                           expected_ids: dict[int, set[str]] | None = None) -> None:
    """Zero duplicates, zero lost records, every device sees exactly the server's data,
    and nothing is left unsynced or rejected.

    ``expected_ids``: user id -> the observation ids that must exist (all of them,
    and no others).
    """
    devices = list(devices)
    views: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for device in devices:
        assert await device.client.outbox() == [], device.client.device_id
        assert await device.client.rejections() == [], device.client.device_id
        if device.token not in views:
            views[device.token] = await server_view(app, device.token)
        view = views[device.token]
        for table in TABLE_NAMES:
            local = {r["id"]: r for r in await device.client.records(table)}
            assert local == view[table], (device.client.device_id, table)
    for user_id, ids in (expected_ids or {}).items():
        stored = await Observation.filter(user_id=user_id, is_deleted=False).values_list(
            "id", flat=True)
        assert len(stored) == len(set(stored))
        assert set(stored) == ids, (user_id, set(stored) ^ ids)

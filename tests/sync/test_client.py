"""The reference client (sync/client.py) against the real app and database."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from starlette.applications import Starlette

from server.models.observations import Observation
from server.tombstones import purge_tombstones
from sync.client import RetriesExhausted, RetryPolicy, SyncClient, SyncHTTPError
from tests.factories import make_user
from tests.factories_sync import make_world
from tests.factories_syncclient import (
    FAST_RETRY,
    assert_converged,
    new_observation,
    phones,
    sync_to_quiescence,
)
from tests.faults import Fault, FaultyTransport

OBS = "observations"


async def test_record_sync_and_a_second_device_sees_it(db: Starlette) -> None:
    world = await make_world()
    user, token = await make_user(project=world.project)
    async with phones(db, [(user.id, token)] * 2) as (phone, tablet):
        rid = await phone.client.record(OBS, new_observation(world, notes="first"))
        assert await phone.client.outbox() == [(OBS, rid, "created")]
        report = await phone.client.sync()
        assert report.push.applied == 1 and await phone.client.outbox() == []
        await tablet.client.sync()
        assert (await tablet.client.get(OBS, rid) or {})["notes"] == "first"

        await tablet.client.update(OBS, rid, {"notes": "edited"})
        other = await tablet.client.record(OBS, new_observation(world))
        await phone.client.delete(OBS, rid)  # offline on the phone meanwhile
        await sync_to_quiescence([tablet, phone])
        assert await phone.client.get(OBS, rid) is None
        assert await tablet.client.get(OBS, rid) is None
        await assert_converged(db, [phone, tablet], {user.id: {other}})


async def test_pull_pages_store_the_cursor_after_every_page(db: Starlette) -> None:
    world = await make_world()
    user, token = await make_user(project=world.project)
    async with phones(db, [(user.id, token)] * 2, page_size=10) as (phone, tablet):
        for _ in range(25):
            await phone.client.record(OBS, new_observation(world))
        await phone.client.sync()
        # The tablet's third page never arrives, however often it retries.
        tablet.wire.inject(None, on="pull", times=2)
        tablet.wire.inject(Fault.LOSE_REQUEST, on="pull", times=FAST_RETRY.attempts)
        with pytest.raises(RetriesExhausted):
            await tablet.client.sync()
        first_two_pages = await tablet.client.cursor()
        assert first_two_pages is not None
        assert len(await tablet.client.records("taxa")) > 0
        resumed = await tablet.client.sync()
        async with phones(db, [(user.id, token)], page_size=10) as (fresh,):
            everything = await fresh.client.sync()
        assert resumed.pull.pages == everything.pull.pages - 2
        await sync_to_quiescence([phone, tablet])
        await assert_converged(db, [phone, tablet])
        assert len(await tablet.client.records(OBS)) == 25


async def test_push_goes_in_batches(db: Starlette) -> None:
    world = await make_world()
    user, token = await make_user(project=world.project)
    async with phones(db, [(user.id, token)], batch_size=3) as (phone,):
        ids = {await phone.client.record(OBS, new_observation(world)) for _ in range(7)}
        report = await phone.client.sync()
        assert (report.push.batches, report.push.applied) == (3, 7)
        await sync_to_quiescence([phone])
        await assert_converged(db, [phone], {user.id: ids})


async def test_network_errors_and_5xx_are_retried_with_jittered_backoff(db: Starlette) -> None:
    world = await make_world()
    user, token = await make_user(project=world.project)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    wire = FaultyTransport(httpx.ASGITransport(app=db))
    policy = RetryPolicy(attempts=4, base_delay=1.0, max_delay=3.0)
    async with SyncClient("http://testserver", token, transport=wire, retry=policy,
                          sleep=sleep, rng=random.Random(1)) as phone:
        rid = await phone.record(OBS, new_observation(world))
        wire.inject(Fault.LOSE_REQUEST, on="pull")
        wire.inject(Fault.GATEWAY_ERROR, on="push")
        wire.inject(Fault.LOSE_RESPONSE, on="push")
        await phone.sync()
        assert len(slept) == 3
        assert 0 <= slept[0] <= 1.0 and all(0 <= s <= 3.0 for s in slept)
        assert await phone.outbox() == []
        assert await Observation.filter(id=rid).count() == 1

        slept.clear()
        await phone.update(OBS, rid, {"notes": "x"})
        wire.inject(Fault.LOSE_REQUEST, on="push", times=4)
        with pytest.raises(RetriesExhausted) as caught:
            await phone.sync()
        assert caught.value.attempts == 4 and len(slept) == 3
        assert await phone.outbox() == [(OBS, rid, "updated")]  # nothing lost locally
        await phone.sync()
        assert (await Observation.get(id=rid)).notes == "x"


def test_backoff_grows_exponentially_and_is_capped() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0)
    rng = random.Random(7)
    for attempt, cap in enumerate([0.5, 1.0, 2.0, 4.0, 4.0, 4.0]):
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap * 0.8  # full jitter spreads over the whole range


async def test_client_errors_are_raised_not_retried(db: Starlette) -> None:
    wire = FaultyTransport(httpx.ASGITransport(app=db))
    async with SyncClient("http://testserver", "not-a-token", transport=wire,
                          retry=FAST_RETRY) as phone:
        with pytest.raises(SyncHTTPError) as caught:
            await phone.sync()
        assert caught.value.status_code == 401 and wire.delivered == 1


async def test_rejected_records_are_kept_with_their_code_until_edited(db: Starlette) -> None:
    world = await make_world()
    user, token = await make_user(project=world.project)
    async with phones(db, [(user.id, token)]) as (phone,):
        bad = await phone.client.record(OBS, new_observation(world, taxon_id="999999"))
        good = await phone.client.record(OBS, new_observation(world))
        report = await phone.client.sync()
        assert [(r.id, r.code) for r in report.push.rejected] == [(bad, "unknown_taxon")]
        assert [(r.id, r.code) for r in await phone.client.rejections()] == [
            (bad, "unknown_taxon")]
        assert await phone.client.outbox() == [(OBS, bad, "created")]
        assert (await phone.client.sync()).push.pushed == 0  # not pushed again as is
        await phone.client.update(OBS, bad, {"taxon_id": str(world.hazel.id)})
        assert (await phone.client.sync()).push.applied == 1
        await sync_to_quiescence([phone])
        await assert_converged(db, [phone], {user.id: {bad, good}})


async def test_an_edit_while_the_push_is_in_flight_stays_in_the_outbox(
    db: Starlette,
) -> None:
    world = await make_world()
    user, token = await make_user(project=world.project)
    async with phones(db, [(user.id, token)]) as (phone,):
        rid = await phone.client.record(OBS, new_observation(world))

        async def edit() -> None:
            await phone.client.update(OBS, rid, {"notes": "typed during the push"})

        phone.wire.before("push", edit)
        report = await phone.client.sync()
        assert report.push.applied == 1
        assert await phone.client.outbox() == [(OBS, rid, "created")]
        await sync_to_quiescence([phone])
        assert (await Observation.get(id=rid)).notes == "typed during the push"
        await assert_converged(db, [phone], {user.id: {rid}})


async def test_a_conflict_is_merged_per_column_and_pushed_again(db: Starlette) -> None:
    world = await make_world()
    user, token = await make_user(project=world.project)
    async with phones(db, [(user.id, token)] * 2) as (phone, tablet):
        rid = await phone.client.record(OBS, new_observation(world))
        await sync_to_quiescence([phone, tablet])
        await phone.client.update(OBS, rid, {"notes": "phone"})
        await tablet.client.update(OBS, rid, {"latitude": 52.0, "notes": "tablet"})

        # The tablet's sync lands between the phone's pull and the phone's push.
        async def tablet_syncs() -> None:
            await tablet.client.sync()

        phone.wire.before("push", tablet_syncs)
        report = await phone.client.sync()
        assert report.push.conflicts == 1 and report.push.rejected == []
        merged = await phone.client.get(OBS, rid)
        assert merged is not None and (merged["notes"], merged["latitude"]) == ("phone", 52.0)
        await sync_to_quiescence([phone, tablet])
        stored = await Observation.get(id=rid)
        assert (stored.notes, stored.latitude) == ("phone", 52.0)
        await assert_converged(db, [phone, tablet], {user.id: {rid}})


async def test_full_resync_drops_synced_data_and_keeps_local_changes(db: Starlette) -> None:
    world = await make_world()
    user, token = await make_user(project=world.project)
    async with phones(db, [(user.id, token)] * 2) as (phone, tablet):
        keep = await phone.client.record(OBS, new_observation(world))
        gone = await phone.client.record(OBS, new_observation(world))
        await sync_to_quiescence([phone, tablet])
        await phone.client.delete(OBS, gone)
        await phone.client.sync()
        assert await purge_tombstones(0, now=datetime.now(UTC) + timedelta(seconds=1)) == 1
        offline = await tablet.client.record(OBS, new_observation(world))
        report = await tablet.client.sync()
        assert report.pull.full_resync
        assert {r["id"] for r in await tablet.client.records(OBS)} == {keep, offline}
        await sync_to_quiescence([phone, tablet])
        await assert_converged(db, [phone, tablet], {user.id: {keep, offline}})


async def test_the_device_id_and_cursor_survive_a_restart(db: Starlette, tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    world = await make_world()
    user, token = await make_user(project=world.project)
    path = tmp_path / "device.sqlite3"
    async with SyncClient("http://testserver", token, database=path,
                          transport=httpx.ASGITransport(app=db)) as phone:
        rid = await phone.record(OBS, new_observation(world))
        device_id = phone.device_id
    async with SyncClient("http://testserver", token, database=path,
                          transport=httpx.ASGITransport(app=db)) as phone:
        assert phone.device_id == device_id and await phone.outbox() == [(OBS, rid, "created")]
        await phone.sync()
        cursor = await phone.cursor()
    async with SyncClient("http://testserver", token, database=path,
                          transport=httpx.ASGITransport(app=db)) as phone:
        assert await phone.cursor() == cursor and await phone.get(OBS, rid) is not None
        assert (await Observation.get(id=rid)).client_changed_device == device_id


async def test_only_device_tables_can_be_changed(db: Starlette) -> None:
    async with SyncClient("http://testserver", "t",
                          transport=httpx.ASGITransport(app=db)) as phone:
        with pytest.raises(ValueError):
            await phone.record("taxa", {"scientific_name": "x"})
        with pytest.raises(KeyError):
            await phone.update(OBS, "a" * 16, {"notes": "x"})

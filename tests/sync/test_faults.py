"""Fault injection: the reference client over a wire that loses, repeats and reorders.

The server and the database are real (``tests.faults.FaultyTransport`` wraps
the app's ASGI transport).  Every scenario ends the same way: all devices sync
to quiescence, then zero duplicates, zero lost records, every device's view
equals the server's, and nothing is left rejected.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from tortoise.transactions import in_transaction

from server.models.observations import Observation
from server.models.sequence import next_seq
from sync.client import SyncClient
from tests.factories import make_user
from tests.factories_sync import make_world
from tests.factories_syncclient import (
    FAST_RETRY,
    Phone,
    assert_converged,
    new_observation,
    no_sleep,
    phones,
    sync_to_quiescence,
)
from tests.faults import Fault, FaultyTransport

OBS = "observations"


async def test_lost_requests_are_retried(db: Starlette) -> None:
    world = await make_world()
    user, token = await make_user(project=world.project)
    async with phones(db, [(user.id, token)] * 2) as (phone, tablet):
        ids = {await phone.client.record(OBS, new_observation(world)) for _ in range(5)}
        phone.wire.inject(Fault.LOSE_REQUEST, on="pull", times=2)
        phone.wire.inject(Fault.LOSE_REQUEST, on="push", times=3)
        tablet.wire.inject(Fault.LOSE_REQUEST, times=4)
        report = await phone.client.sync()
        assert report.push.applied == 5
        await sync_to_quiescence([phone, tablet])
        await assert_converged(db, [phone, tablet], {user.id: ids})


async def test_lost_responses_never_duplicate_nor_conflict(db: Starlette) -> None:
    world = await make_world()
    user, token = await make_user(project=world.project)
    async with phones(db, [(user.id, token)] * 2) as (phone, tablet):
        ids = {await phone.client.record(OBS, new_observation(world)) for _ in range(3)}
        # Every attempt reaches the server, no answer ever comes back.
        phone.wire.inject(Fault.LOSE_RESPONSE, on="push", times=FAST_RETRY.attempts)
        await _fails(phone.client.sync())
        assert await Observation.filter(id__in=list(ids)).count() == 3
        assert len(await phone.client.outbox()) == 3  # the device does not know yet
        # Offline again: an edit and a delete on top of the unacknowledged creates.
        first, second, _ = sorted(ids)
        await phone.client.update(OBS, first, {"notes": "edited after the lost reply"})
        await phone.client.delete(OBS, second)
        ids.discard(second)
        phone.wire.inject(Fault.LOSE_RESPONSE, on="pull")
        report = await phone.client.sync()
        assert report.push.conflicts == 0 and report.push.rejected == []
        await sync_to_quiescence([phone, tablet])
        assert (await Observation.get(id=first)).notes == "edited after the lost reply"
        await assert_converged(db, [phone, tablet], {user.id: ids})


async def test_duplicated_deliveries_change_nothing_twice(db: Starlette) -> None:
    world = await make_world()
    user, token = await make_user(project=world.project)
    async with phones(db, [(user.id, token)] * 2) as (phone, tablet):
        ids = {await phone.client.record(OBS, new_observation(world)) for _ in range(4)}
        phone.wire.inject(Fault.DUPLICATE, on="push")
        report = await phone.client.sync()
        assert report.push.unchanged == 4  # the client sees the second delivery's answer
        rid = sorted(ids)[0]
        before = (await Observation.get(id=rid)).updated_seq
        await phone.client.update(OBS, rid, {"notes": "once"})
        await phone.client.delete(OBS, sorted(ids)[1])
        ids.discard(sorted(ids)[1])
        phone.wire.inject(Fault.DUPLICATE, on="push")
        tablet.wire.inject(Fault.DUPLICATE, on="pull", times=3)
        await sync_to_quiescence([phone, tablet])
        stored = await Observation.get(id=rid)
        assert stored.client_revision == 2 and stored.updated_seq > before
        await assert_converged(db, [phone, tablet], {user.id: ids})


async def test_an_older_push_delivered_after_a_newer_one(db: Starlette) -> None:
    """Held-back deliveries arrive after the device has moved on: a replayed
    create changes nothing, and a stale update of a record deleted since is
    refused (``deleted``): no record comes back to life."""
    world = await make_world()
    user, token = await make_user(project=world.project)
    async with phones(db, [(user.id, token)] * 2) as (phone, tablet):
        kept = await phone.client.record(OBS, new_observation(world, notes="v1"))
        doomed = await phone.client.record(OBS, new_observation(world))
        phone.wire.inject(Fault.HOLD, on="push")  # the retry gets through
        await phone.client.sync()
        await phone.client.update(OBS, doomed, {"notes": "stale edit"})
        phone.wire.inject(Fault.HOLD, on="push")
        await phone.client.sync()
        await phone.client.delete(OBS, doomed)
        await phone.client.sync()
        # The two held pushes arrive now, oldest first.
        late = await phone.wire.release()
        assert [r.json()["counts"] for r in late] == [
            {"applied": 0, "unchanged": 1, "rejected": 1},  # kept: the create; doomed: gone
            {"applied": 0, "unchanged": 0, "rejected": 1},
        ]
        assert [x["code"] for x in late[1].json()["results"][OBS]] == ["deleted"]
        await sync_to_quiescence([phone, tablet])
        assert await Observation.filter(id=doomed, is_deleted=False).count() == 0
        await assert_converged(db, [phone, tablet], {user.id: {kept}})


@pytest.mark.parametrize("push_count", [True, False], ids=["push_count", "no_push_count"])
async def test_a_delayed_older_edit_does_not_overwrite_a_newer_one(
    db: Starlette, push_count: bool,
) -> None:
    """The held original of a push arrives after its retry and after a newer
    edit of the same device: it is superseded, with or without ``push_count``
    (the newer push was sent after a pull that saw the retry's write, so its
    ``last_pulled_at`` is higher)."""
    world = await make_world()
    user, token = await make_user(project=world.project)
    async with phones(db, [(user.id, token)] * 2) as (phone, tablet):
        phone.client.send_push_count = push_count
        rid = await phone.client.record(OBS, new_observation(world))
        await phone.client.sync()
        await phone.client.update(OBS, rid, {"notes": "v1"})
        phone.wire.inject(Fault.HOLD, on="push")  # the retry gets through
        await phone.client.sync()
        await phone.client.update(OBS, rid, {"notes": "v2"})
        await phone.client.sync()
        [late] = await phone.wire.release()  # "v1" arrives last
        assert [(r["status"], r.get("code")) for r in late.json()["results"][OBS]] == [
            ("rejected", "superseded")]
        assert (await Observation.get(id=rid)).notes == "v2"
        await sync_to_quiescence([phone, tablet])
        await assert_converged(db, [phone, tablet], {user.id: {rid}})
        assert (await Observation.get(id=rid)).notes == "v2"


async def test_pushes_lost_on_every_attempt_arrive_late_in_any_order(db: Starlette) -> None:
    """Four pushes of one device never get through (every attempt is held), so
    all twenty copies carry the same ``last_pulled_at``: only ``push_count``
    orders them.  They arrive newest push first, then v2, v1, v3: the
    newest applies once and every older copy is superseded or unchanged."""
    world = await make_world()
    user, token = await make_user(project=world.project)
    async with phones(db, [(user.id, token)] * 2) as (phone, tablet):
        rid = await phone.client.record(OBS, new_observation(world))
        await sync_to_quiescence([phone, tablet])
        for version in ("v1", "v2", "v3", "v4"):
            await phone.client.update(OBS, rid, {"notes": version})
            phone.wire.inject(Fault.HOLD, on="push", times=FAST_RETRY.attempts)
            await _fails(phone.client.sync())
        held = phone.wire.held
        assert len(held) == 4 * FAST_RETRY.attempts
        assert len({r.url.params["last_pulled_at"] for r in held}) == 1
        copies = [list(range(n, n + FAST_RETRY.attempts))
                  for n in range(0, len(held), FAST_RETRY.attempts)]  # per push, v1..v4
        order = [*copies[3], *copies[1], *copies[0], *copies[2]]
        late = [r.json()["results"][OBS][0] for r in await phone.wire.release(order)]
        outcomes = [(r["status"], r.get("code")) for r in late]
        n = FAST_RETRY.attempts
        assert outcomes[:n] == [("applied", None)] + [("unchanged", None)] * (n - 1)
        assert outcomes[n:] == [("rejected", "superseded")] * (3 * n)
        assert (await Observation.get(id=rid)).notes == "v4"
        await sync_to_quiescence([phone, tablet])
        await assert_converged(db, [phone, tablet], {user.id: {rid}})
        assert (await Observation.get(id=rid)).notes == "v4"


async def test_two_installs_with_one_device_id_merge_a_superseded_push(db: Starlette) -> None:
    """A backup restored onto a second phone runs next to the original with the
    same device id and a lower ``push_count``: between its pull and its push
    the original pushes from the same cursor, so its push is ``superseded``.
    The client merges the server's version like a conflict and its change goes
    through at the next sync; neither edit is lost."""
    world = await make_world()
    user, token = await make_user(project=world.project)
    async with phones(db, [(user.id, token)]) as [original]:
        rid = await original.client.record(OBS, new_observation(world))
        for n in range(3):
            await original.client.update(OBS, rid, {"notes": f"edit {n}"})
            await original.client.sync()
        wire = FaultyTransport(httpx.ASGITransport(app=db))
        async with SyncClient("http://testserver", token, transport=wire, retry=FAST_RETRY,
                              sleep=no_sleep, device_id=original.client.device_id) as copy:
            clone = Phone(copy, wire, token, user.id)
            await clone.client.sync()
            await original.client.sync()
            await original.client.update(OBS, rid, {"notes": "from the original"})
            await clone.client.update(OBS, rid, {"latitude": 52.2})
            clone.wire.before("push", original.client.sync)  # same cursor, higher count
            report = await clone.client.sync()
            assert (report.push.superseded, report.push.applied) == (1, 0)
            assert await clone.client.outbox() == [(OBS, rid, "updated")]
            report = await clone.client.sync()
            assert report.push.applied == 1
            await sync_to_quiescence([original, clone])
            stored = await Observation.get(id=rid)
            assert (stored.notes, stored.latitude) == ("from the original", 52.2)
            await assert_converged(db, [original, clone], {user.id: {rid}})


async def test_two_devices_of_one_user_edit_the_same_record(db: Starlette) -> None:
    world = await make_world()
    user, token = await make_user(project=world.project)
    async with phones(db, [(user.id, token)] * 2) as (phone, tablet):
        rid = await phone.client.record(OBS, new_observation(world))
        await sync_to_quiescence([phone, tablet])
        await phone.client.update(OBS, rid, {"notes": "from the phone", "latitude": 52.1})
        await tablet.client.update(OBS, rid, {"notes": "from the tablet",
                                              "geoprivacy": "obscured"})
        phone.wire.inject(Fault.LOSE_RESPONSE, on="push")
        tablet.wire.inject(Fault.DUPLICATE, on="push")
        reports = await asyncio.gather(phone.client.sync(), tablet.client.sync())
        assert all(r.push.rejected == [] for r in reports)
        await sync_to_quiescence([phone, tablet])
        stored = await Observation.get(id=rid)
        # Columns only one device changed survive; for the column both changed,
        # the device that synced last wins (it merged the other's version first).
        assert (stored.latitude, str(stored.geoprivacy)) == (52.1, "obscured")
        assert stored.notes in ("from the phone", "from the tablet")
        await assert_converged(db, [phone, tablet], {user.id: {rid}})


async def test_a_reviewer_changes_a_record_while_the_device_edits_it(db: Starlette) -> None:
    world = await make_world()
    user, token = await make_user(project=world.project)
    async with phones(db, [(user.id, token)] * 2) as (phone, tablet):
        rid = await phone.client.record(OBS, new_observation(world))
        await sync_to_quiescence([phone, tablet])
        await phone.client.update(OBS, rid, {"notes": "buds, not flowers"})

        async def reviewer_verifies() -> None:
            async with in_transaction() as conn:
                seq = await next_seq(conn)
                await Observation.filter(id=rid).using_db(conn).update(
                    review_status="verified", verified_phenophase_id=world.leaves.id,
                    updated_seq=seq,
                )

        # Between the device's pull and its push: the device's cursor is older.
        phone.wire.before("push", reviewer_verifies)
        report = await phone.client.sync()
        assert (report.push.applied, report.push.conflicts) == (1, 0)
        await sync_to_quiescence([phone, tablet])
        for device in (phone, tablet):
            seen = await device.client.get(OBS, rid)
            assert seen is not None
            assert (seen["notes"], seen["review_status"], seen["verified_phenophase_id"]) == (
                "buds, not flowers", "verified", str(world.leaves.id))
        await assert_converged(db, [phone, tablet], {user.id: {rid}})


async def test_twenty_devices_push_at_once(db: Starlette) -> None:
    world = await make_world()
    users = [await make_user(project=world.project) for _ in range(5)]
    owners = [(u.id, token) for u, token in users for _ in range(4)]  # 4 devices per user
    faults = [None, Fault.LOSE_REQUEST, Fault.LOSE_RESPONSE, Fault.DUPLICATE, Fault.HOLD]
    async with phones(db, owners, batch_size=10) as devices:
        await asyncio.gather(*(d.client.sync() for d in devices))
        expected: dict[int, set[str]] = {u.id: set() for u, _ in users}
        for n, device in enumerate(devices):
            for _ in range(15):
                expected[device.user_id].add(
                    await device.client.record(OBS, new_observation(world)))
            if faults[n % 5] is not None:
                device.wire.inject(faults[n % 5], on="push", times=2)
        reports = await asyncio.gather(*(d.client.sync() for d in devices))
        assert sum(r.push.applied + r.push.unchanged for r in reports) == 20 * 15
        # Then each device edits a record of its user that another device created.
        for n, device in enumerate(devices):
            await device.client.sync()
            theirs = sorted(r["id"] for r in await device.client.records(OBS))
            await device.client.update(OBS, theirs[n % len(theirs)], {"notes": f"device {n}"})
        await asyncio.gather(*(d.client.sync() for d in devices))
        for device in devices:
            await device.wire.release()
        await sync_to_quiescence(devices)
        await assert_converged(db, devices, expected)
        assert await Observation.all().count() == 20 * 15


async def _fails(coroutine: object) -> None:
    from sync.client import RetriesExhausted

    try:
        await coroutine  # type: ignore[misc]
    except RetriesExhausted:
        return
    raise AssertionError("expected the sync to give up")

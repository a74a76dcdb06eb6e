"""Pull rules that need more than one device (sync/pull.py)."""

from __future__ import annotations

import httpx

from tests.factories_sync import make_device, make_world, observation


async def test_a_device_learns_of_the_delete_of_a_record_it_pushed_after_its_pull(
    client: httpx.AsyncClient,
) -> None:
    # The phone pushes a record created after its last pull, so the record was
    # created after the phone's cursor; the tablet deletes it.  The phone holds
    # the record (it pushed it): its next pull must carry the delete.
    world = await make_world()
    phone = await make_device(client, world)
    tablet = phone.another_device()
    await phone.pull_all()
    record = observation(world)
    await phone.push({"observations": {"created": [record]}})
    await tablet.pull_all()
    await tablet.push({"observations": {"deleted": [record["id"]]}})
    changes = await phone.pull_all()
    assert changes["observations"]["deleted"] == [record["id"]]

"""The checks at push time: flags, flag_count, review status, re-checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from tortoise.transactions import in_transaction

from server.models.audit import AuditEvent
from server.models.observations import Observation, QualityFlag
from server.models.review import ReviewQueueItem
from server.models.sequence import next_seq
from server.quality import run_checks
from tests.factories import make_project
from tests.factories_review import push_observations
from tests.factories_sync import make_device, make_world, observation


async def codes(obs_id: str) -> set[str]:
    return set(await QualityFlag.filter(observation_id=obs_id).values_list("code", flat=True))


async def test_a_clean_record_is_auto_accepted_and_a_flagged_one_queued(
    client: httpx.AsyncClient,
) -> None:
    world = await make_world()
    phone = await make_device(client, world)
    clean, outside, coarse = await push_observations(
        phone, observation(world), observation(world, latitude=48.85, longitude=2.35),
        observation(world, coordinate_uncertainty_m=5000),
    )
    assert clean.review_status == "auto_accepted" and clean.flag_count == 0
    assert outside.review_status == "needs_review" and outside.flag_count == 1
    assert await codes(outside.id) == {"outside_project_area"}
    assert await codes(coarse.id) == {"coarse_location"}
    flag = await QualityFlag.get(observation_id=coarse.id)
    assert "5,000 m" in flag.message and flag.details == {
        "coordinate_uncertainty_m": 5000, "max_uncertainty_m": 1000}
    assert await ReviewQueueItem.filter(observation_id__in=[outside.id, coarse.id]).count() == 2
    # The review status travels back to the device.
    changes = await phone.pull_all()
    pulled = {o["id"]: o for o in changes["observations"]["created"]}
    assert pulled[outside.id]["review_status"] == "needs_review"
    assert pulled[outside.id]["quality_flags"] == '["outside_project_area"]'


async def test_without_auto_accept_every_record_is_reviewed(client: httpx.AsyncClient) -> None:
    world = await make_world()
    world.project.auto_accept = False
    await world.project.save()
    (obs,) = await push_observations(await make_device(client, world), observation(world))
    assert obs.review_status == "needs_review" and obs.flag_count == 0


async def test_dates_future_and_implausible(client: httpx.AsyncClient) -> None:
    world = await make_world()
    phone = await make_device(client, world)
    soon = (datetime.now(UTC) + timedelta(hours=6)).isoformat(timespec="seconds")
    created_ms = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp() * 1000)
    future, late, on_time = await push_observations(
        phone, observation(world, observed_at=soon),
        observation(world, observed_at="2021-04-01T10:00:00+00:00", created_at=created_ms),
        observation(world, observed_at="2026-02-01T10:00:00+00:00", created_at=created_ms),
    )
    assert await codes(future.id) == {"future_date"}
    assert await codes(late.id) == {"implausible_date"}
    assert "recorded 1794 days later" in (await QualityFlag.get(observation_id=late.id)).message
    assert await codes(on_time.id) == set()


async def test_conflicting_status_flags_both_records(client: httpx.AsyncClient) -> None:
    world = await make_world()
    phone = await make_device(client, world)
    (yes,) = await push_observations(
        phone, observation(world, observed_at="2026-03-01T09:00:00+01:00"))
    assert yes.review_status == "auto_accepted"
    no, = await push_observations(phone, observation(
        world, status="no", intensity=None, observed_at="2026-03-01T16:00:00+01:00",
        latitude=yes.latitude + 0.0003))
    assert await codes(no.id) == {"conflicting_status"}
    await yes.refresh_from_db()
    assert await codes(yes.id) == {"conflicting_status"}
    assert yes.review_status == "needs_review" and yes.flag_count == 1
    # Another day, or far away, is no conflict.
    other, = await push_observations(phone, observation(
        world, status="no", intensity=None, observed_at="2026-03-02T09:00:00+01:00"))
    assert await codes(other.id) == set()


async def verified_in_february(phone: Any, world: Any, count: int
                               ) -> tuple[list[datetime], list[Observation]]:
    """``count`` verified "yes" records of the world's hazel flowers in early
    February: the sample out_of_season learns the season from."""
    days = [datetime(2025, 2, 1, 10, tzinfo=UTC) + timedelta(days=d % 15) for d in range(count)]
    verified = await push_observations(phone, *[
        observation(world, observed_at=d.isoformat()) for d in days])
    await Observation.filter(id__in=[o.id for o in verified]).update(review_status="verified")
    return days, verified


async def test_out_of_season_needs_enough_verified_records(client: httpx.AsyncClient) -> None:
    world = await make_world()
    phone = await make_device(client, world)
    days, _ = await verified_in_february(phone, world, 19)
    august = observation(world, observed_at="2025-08-10T10:00:00+00:00")
    (early,) = await push_observations(phone, august)
    assert await codes(early.id) == set()  # 19 verified records: not judged yet
    extra = await push_observations(phone, observation(world, observed_at=days[3].isoformat()))
    await Observation.filter(id=extra[0].id).update(review_status="verified")
    # A client edit re-runs the checks, now with 20 verified records.
    r = await phone.push({"observations": {"updated": [{**august, "notes": "sure?"}]}})
    assert r.json()["counts"]["applied"] == 1
    assert await codes(early.id) == {"out_of_season"}
    flag = await QualityFlag.get(observation_id=early.id)
    assert flag.details and flag.details["sample_size"] == 20
    assert "learned from 20 verified observations" in flag.message


async def test_out_of_season_leaves_out_records_a_reviewer_moved(
    client: httpx.AsyncClient,
) -> None:
    world = await make_world()
    phone = await make_device(client, world)
    _, verified = await verified_in_february(phone, world, 21)
    # Two of the 21 are really oak leaves, say the reviewers: 19 remain.
    await Observation.filter(id__in=[verified[0].id]).update(verified_taxon_id=world.oak.id)
    await Observation.filter(id__in=[verified[1].id]).update(
        verified_phenophase_id=world.leaves.id)
    (august,) = await push_observations(
        phone, observation(world, observed_at="2025-08-10T10:00:00+00:00"))
    assert await codes(august.id) == set()  # 19 verified records: not judged
    await Observation.filter(id=verified[1].id).update(verified_phenophase_id=None)
    (later,) = await push_observations(
        phone, observation(world, observed_at="2025-08-11T10:00:00+00:00"))
    flag = await QualityFlag.get(observation_id=later.id, code="out_of_season")
    assert flag.details and flag.details["sample_size"] == 20


async def test_fixing_the_record_removes_the_flag_and_a_recheck_keeps_numbers_moving(
    client: httpx.AsyncClient,
) -> None:
    world = await make_world()
    phone = await make_device(client, world)
    record = observation(world, latitude=48.85, longitude=2.35)
    (obs,) = await push_observations(phone, record)
    await phone.pull_all()
    await phone.push({"observations": {"updated": [{**record, "latitude": 51.9,
                                                    "longitude": 5.6}]}})
    await obs.refresh_from_db()
    assert obs.flag_count == 0 and await codes(obs.id) == set()
    assert obs.review_status == "needs_review"  # only a needs_info edit re-decides
    # A re-check after the project area changed: flag, new sync number, no conflict.
    await make_project()  # unrelated project
    world.project.max_latitude = 51.0
    await world.project.save()
    before = obs.updated_seq
    async with in_transaction() as conn:
        changed = await run_checks([obs.id], conn, edited=False)
        assert changed == [obs.id]
        assert await next_seq(conn) > before
    await obs.refresh_from_db()
    assert obs.updated_seq > before and obs.client_changed_seq < obs.updated_seq
    assert await codes(obs.id) == {"outside_project_area"}
    # Created in needs_review and never moved since: no status change to audit
    # (the flag moved, and has its own row and time).
    assert await AuditEvent.filter(entity_id=obs.id, action="review.status_changed").count() == 0


async def test_a_stored_status_that_moves_is_audited_a_new_records_first_is_not(
    client: httpx.AsyncClient,
) -> None:
    world = await make_world()
    world.project.auto_accept = True
    await world.project.save()
    phone = await make_device(client, world)
    record = observation(world)
    (obs,) = await push_observations(phone, record)
    await obs.refresh_from_db()
    assert obs.review_status == "auto_accepted"
    events = AuditEvent.filter(entity_id=obs.id, action="review.status_changed")
    assert await events.count() == 0  # created so: no change of a stored status
    await phone.pull_all()
    r = await phone.push({"observations": {"updated": [{**record, "latitude": 48.85,
                                                        "longitude": 2.35}]}})
    assert r.json()["counts"]["applied"] == 1
    (event,) = await events
    assert event.data == {"from": "auto_accepted", "to": "needs_review", "reason": "edited",
                          "flags": ["outside_project_area"]}

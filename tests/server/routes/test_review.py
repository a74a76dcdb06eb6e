"""The review API: queue order and filters, leases, consensus, corrections,
bulk decisions, statistics, audit trail, and who may do what."""

from __future__ import annotations

import httpx

from server.models.audit import AuditEvent
from server.models.observations import Observation
from server.models.review import ReviewDecision, ReviewQueueItem
from tests.factories import auth, make_project, make_user
from tests.factories_review import flagged, make_reviewer, push_observations
from tests.factories_sync import make_device, make_world, observation


async def test_queue_puts_most_flags_first_then_oldest_and_filters(
    client: httpx.AsyncClient,
) -> None:
    world = await make_world()
    phone = await make_device(client, world)
    one_a, = await push_observations(phone, observation(world, latitude=48.0, longitude=2.0))
    one_b, = await push_observations(phone, observation(world, latitude=48.0, longitude=2.0,
                                                        taxon_id=str(world.oak.id),
                                                        phenophase_id=str(world.leaves.id),
                                                        intensity=None))
    two, = await push_observations(phone, observation(
        world, latitude=48.0, longitude=2.0, coordinate_uncertainty_m=5000))
    reviewer = await make_reviewer(client, world)
    r = await client.get("/api/v1/review/queue", headers=auth(reviewer.token))
    assert [i["id"] for i in r.json()["items"]] == [two.id, one_a.id, one_b.id]
    assert r.json()["items"][0]["flags"] == ["coarse_location", "outside_project_area"]
    r = await client.get("/api/v1/review/queue", headers=auth(reviewer.token),
                         params={"taxon_id": world.oak.id})
    assert [i["id"] for i in r.json()["items"]] == [one_b.id]
    r = await client.get("/api/v1/review/queue", headers=auth(reviewer.token),
                         params={"flag": "coarse_location", "project": world.project.slug})
    assert [i["id"] for i in r.json()["items"]] == [two.id]
    r = await client.get("/api/v1/review/queue", headers=auth(reviewer.token),
                         params={"phenophase_id": world.leaves.id})
    assert [i["id"] for i in r.json()["items"]] == [one_b.id]


async def test_two_reviewers_never_get_the_same_item(client: httpx.AsyncClient) -> None:
    world = await make_world()
    _, records = await flagged(client, world, count=3)
    anna, bram = await make_reviewer(client, world), await make_reviewer(client, world)
    a = (await anna.claim(limit=2)).json()
    b = (await bram.claim(limit=2)).json()
    got_a, got_b = {i["id"] for i in a["items"]}, {i["id"] for i in b["items"]}
    assert len(got_a) == 2 and len(got_b) == 1 and not got_a & got_b
    assert (await bram.decide(next(iter(got_a)))).json()["error"]["code"] == "claimed_by_another"
    # Skipping gives the item back.
    skipped = next(iter(got_a))
    r = await client.delete(f"/api/v1/review/claims/{skipped}", headers=auth(anna.token))
    assert r.status_code == 204
    assert [i["id"] for i in (await bram.claim()).json()["items"]] == [skipped]


async def test_two_agreeing_reviewers_verify_and_the_result_syncs_back(
    client: httpx.AsyncClient,
) -> None:
    world = await make_world()
    phone, (obs,) = await flagged(client, world)
    await phone.pull_all()
    anna, bram = await make_reviewer(client, world), await make_reviewer(client, world)
    r = await anna.claim_and_decide(obs.id, "verify", comment="clear photo")
    assert r.status_code == 201 and r.json()["outcome"] == "waiting"
    # Anna decided this round: her queue no longer offers it; Bram's does.
    assert (await anna.claim()).json()["items"] == []
    r = await bram.claim_and_decide(obs.id, "verify")
    assert r.json()["outcome"] == "settled" and r.json()["review_status"] == "verified"
    await obs.refresh_from_db()
    assert obs.review_status == "verified" and obs.verified_taxon_id == world.hazel.id  # type: ignore[attr-defined]
    assert obs.client_changed_seq < obs.updated_seq
    assert not await ReviewQueueItem.exists(observation_id=obs.id)
    changes = await phone.pull_all()
    assert changes["observations"]["updated"][0]["review_status"] == "verified"
    actions = await AuditEvent.filter(entity_id=obs.id).order_by("id").values_list(
        "action", flat=True)
    # Created in needs_review (not a change of a stored status: no event), then
    # two decisions and the status they settled.
    assert actions == ["review.decided", "review.decided", "review.status_changed"]
    event = await AuditEvent.filter(entity_id=obs.id, action="review.decided").first()
    assert event and event.actor_id == anna.user.id and event.data["comment"] == "clear photo"  # type: ignore[attr-defined]


async def test_disagreement_escalates_to_experts_who_settle_it_with_a_correction(
    client: httpx.AsyncClient,
) -> None:
    world = await make_world()
    _, (obs,) = await flagged(client, world)
    anna, bram = await make_reviewer(client, world), await make_reviewer(client, world)
    expert = await make_reviewer(client, world, role="expert")
    await anna.claim_and_decide(obs.id, "verify")
    r = await bram.claim_and_decide(obs.id, "reject")
    assert r.json()["outcome"] == "escalated"
    item = await ReviewQueueItem.get(observation_id=obs.id)
    assert item.expert_only and item.claimed_by_id is None
    other = await make_reviewer(client, world)
    assert (await other.claim()).json()["items"] == []
    r = await expert.claim_and_decide(obs.id, "verify", corrected_phenophase_id=world.leaves.id,
                                      corrected_taxon_id=world.oak.id)
    assert r.json()["review_status"] == "verified"
    await obs.refresh_from_db()
    assert (obs.verified_taxon_id, obs.verified_phenophase_id) == (  # type: ignore[attr-defined]
        world.oak.id, world.leaves.id)
    assert obs.taxon_id == world.hazel.id  # type: ignore[attr-defined]  # the volunteer's own
    corrected = await AuditEvent.get(entity_id=obs.id, action="review.corrected")
    assert corrected.data["taxon_id"] == {"from": world.hazel.id, "to": world.oak.id}
    assert await AuditEvent.exists(entity_id=obs.id, action="review.escalated")


async def test_needs_info_goes_back_to_the_volunteer_whose_edit_requeues_it(
    client: httpx.AsyncClient,
) -> None:
    world = await make_world()
    world.project.auto_accept = False
    await world.project.save()
    phone = await make_device(client, world)
    record = observation(world)
    (obs,) = await push_observations(phone, record)
    await phone.pull_all()
    anna = await make_reviewer(client, world)
    r = await anna.claim_and_decide(obs.id, "needs_info", comment="which tree?")
    assert r.json()["review_status"] == "needs_info"
    assert (await phone.pull_all())["observations"]["updated"][0]["review_status"] == "needs_info"
    r = await phone.push({"observations": {"updated": [{**record, "notes": "the big one"}]}})
    assert r.json()["counts"]["applied"] == 1
    await obs.refresh_from_db()
    assert obs.review_status == "needs_review"
    item = await ReviewQueueItem.get(observation_id=obs.id)
    assert item.round == 2
    # A new round: Anna may review it again.
    r = await anna.claim_and_decide(obs.id, "verify")
    assert r.json()["outcome"] == "waiting"


async def test_bulk_decisions_apply_one_by_one(client: httpx.AsyncClient) -> None:
    world = await make_world()
    world.project.agreements_required = 1
    await world.project.save()
    _, records = await flagged(client, world, count=3)
    anna = await make_reviewer(client, world)
    r = await client.post("/api/v1/review/decisions/bulk", headers=auth(anna.token), json={
        "decisions": [{"observation_id": o.id, "decision": "verify"} for o in records]
        + [{"observation_id": "no-such-id", "decision": "verify"}]})
    body = r.json()
    assert body["counts"] == {"applied": 3, "rejected": 1}
    assert body["results"][3]["error"]["code"] == "not_found"
    assert await Observation.filter(review_status="verified").count() == 3
    stats = (await client.get("/api/v1/review/stats", headers=auth(anna.token))).json()
    assert stats["decisions"] == 3 and stats["by_decision"] == {"verify": 3}
    assert stats["agreed_with_outcome"] == 3
    assert stats["queues"] == [{"project": world.project.slug, "waiting": 0, "escalated": 0,
                                "claimed_by_me": 0, "expert": False}]


async def test_observation_detail_explains_flags_and_shows_the_observers_records(
    client: httpx.AsyncClient,
) -> None:
    world = await make_world()
    phone, (obs, older) = await flagged(client, world, count=2)
    anna = await make_reviewer(client, world)
    r = await client.get(f"/api/v1/review/observations/{obs.id}", headers=auth(anna.token))
    detail = r.json()
    assert detail["flags"][0]["code"] == "outside_project_area"
    assert detail["flags"][0]["title"] == "Outside the project area"
    assert "swapped" in detail["flags"][0]["explanation"]
    assert [o["id"] for o in detail["observer_recent"]] == [older.id]
    assert detail["photos"] == []
    flags = (await client.get("/api/v1/review/flags")).json()["flags"]
    assert "photo_duplicate" in {f["code"] for f in flags}


# --- authorization -------------------------------------------------------------

async def test_volunteers_cannot_review(client: httpx.AsyncClient) -> None:
    world = await make_world()
    _, (obs,) = await flagged(client, world)
    _, token = await make_user("volunteer", project=world.project)
    for method, path, body in (
        ("GET", "/api/v1/review/queue", None),
        ("POST", "/api/v1/review/claims", {}),
        ("POST", "/api/v1/review/decisions", {"observation_id": obs.id, "decision": "verify"}),
        ("GET", f"/api/v1/review/observations/{obs.id}", None),
        ("GET", "/api/v1/review/stats", None),
        ("DELETE", f"/api/v1/review/claims/{obs.id}", None),
        # One who reviews nothing is refused whole, not record by record.
        ("POST", "/api/v1/review/decisions/bulk",
         {"decisions": [{"observation_id": obs.id, "decision": "verify"}]}),
    ):
        r = await client.request(method, path, json=body, headers=auth(token))
        assert r.status_code == 403, (path, r.text)
        assert r.json()["error"]["code"] == "permission_denied"
    assert not await ReviewDecision.exists()
    assert (await client.get("/api/v1/review/queue")).status_code == 401


async def test_reviewers_review_only_in_their_own_projects(client: httpx.AsyncClient) -> None:
    world = await make_world()
    _, (obs,) = await flagged(client, world)
    elsewhere = await make_project(slug="elsewhere")
    _, token = await make_user("reviewer", project=elsewhere)
    r = await client.post("/api/v1/review/claims", headers=auth(token), json={"limit": 5})
    assert r.json()["items"] == []
    r = await client.get("/api/v1/review/queue", headers=auth(token),
                         params={"project": world.project.slug})
    assert r.status_code == 403
    r = await client.post("/api/v1/review/decisions/bulk", headers=auth(token), json={
        "decisions": [{"observation_id": obs.id, "decision": "reject"}]})
    assert r.json()["results"][0]["error"]["code"] == "permission_denied"
    r = await client.get(f"/api/v1/review/observations/{obs.id}", headers=auth(token))
    assert r.status_code == 403


async def test_nobody_reviews_their_own_record(client: httpx.AsyncClient) -> None:
    world = await make_world()
    reviewer = await make_reviewer(client, world, role="expert")
    own = await make_device(client, world)
    own.token = reviewer.token
    _, (obs,) = await flagged(client, world, device=own)
    assert (await reviewer.claim(limit=5)).json()["items"] == []
    r = await reviewer.decide(obs.id)
    assert r.status_code == 403 and "own record" in r.json()["error"]["message"]
    r = await client.post("/api/v1/review/decisions/bulk", headers=auth(reviewer.token), json={
        "decisions": [{"observation_id": obs.id, "decision": "verify"}]})
    assert r.json()["results"][0]["error"]["code"] == "permission_denied"


async def test_an_expired_lease_cannot_decide(client: httpx.AsyncClient) -> None:
    world = await make_world()
    _, (obs,) = await flagged(client, world)
    anna = await make_reviewer(client, world)
    r = await anna.decide(obs.id)
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_claimed"
    assert [i["id"] for i in (await anna.claim()).json()["items"]] == [obs.id]
    await ReviewQueueItem.filter(observation_id=obs.id).update(lease_expires_ms=1)
    for _ in range(2):  # single and bulk
        r = await anna.decide(obs.id)
        assert r.status_code == 409 and r.json()["error"]["code"] == "lease_expired"
    r = await client.post("/api/v1/review/decisions/bulk", headers=auth(anna.token), json={
        "decisions": [{"observation_id": obs.id, "decision": "verify"}]})
    assert r.json()["results"][0]["error"]["code"] == "lease_expired"
    assert not await ReviewDecision.exists()
    # The expired item is back in everyone's queue.
    bram = await make_reviewer(client, world)
    assert [i["id"] for i in (await bram.claim()).json()["items"]] == [obs.id]


async def test_a_deleted_record_leaves_the_queue(client: httpx.AsyncClient) -> None:
    world = await make_world()
    phone, (gone, kept) = await flagged(client, world, count=2)
    r = await phone.push({"observations": {"deleted": [gone.id]}})
    assert r.json()["counts"]["applied"] == 1
    anna = await make_reviewer(client, world)
    assert [i["id"] for i in (await anna.claim(limit=5)).json()["items"]] == [kept.id]
    r = await anna.decide(gone.id)
    assert r.status_code == 404
    assert not await ReviewQueueItem.exists(observation_id=gone.id)

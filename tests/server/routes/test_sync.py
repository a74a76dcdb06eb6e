"""The sync protocol over HTTP: rules of DESIGN.md, one test per rule."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from server.models.observations import Observation, QualityFlag
from server.models.reference import Project
from server.models.sequence import next_seq
from server.tombstones import purge_tombstones
from tests.factories import auth, make_project, make_user
from tests.factories_sync import Device, created, make_device, make_world, observation

PUSH = "/api/v1/sync/push"


async def test_first_pull_sends_reference_data_and_own_records_only(
    client: httpx.AsyncClient,
) -> None:
    world = await make_world()
    closed = await make_project(slug="closed", is_open=False)
    anna, bram = await make_device(client, world), await make_device(client, world)
    mine = observation(world)
    r = await anna.push({"observations": {"created": [mine], "updated": [], "deleted": []}})
    assert r.json()["counts"] == {"applied": 1, "unchanged": 0, "rejected": 0}
    await bram.push({"observations": {"created": [observation(world)]}})

    changes = await anna.pull_all()
    assert [o["id"] for o in created(changes)] == [mine["id"]]
    assert {p["slug"] for p in created(changes, "projects")} == {"natuurkalender"}
    assert closed.slug not in json.dumps(changes)
    assert len(created(changes, "taxa")) >= 30
    assert len(created(changes, "phenophases")) >= 15
    record = created(changes)[0]
    assert record["observed_at"] == "2026-02-14T10:30:00+01:00"
    # No flags and the project auto-accepts: the quality checks accepted it at push.
    assert record["review_status"] == "auto_accepted" and record["quality_flags"] == "[]"
    assert all(isinstance(v, (str, int, float, bool, type(None))) for v in record.values())


async def test_incremental_pull_separates_created_updated_and_deleted(
    client: httpx.AsyncClient,
) -> None:
    world = await make_world()
    phone = await make_device(client, world)
    tablet = phone.another_device()
    a, b, c = observation(world), observation(world), observation(world)
    await phone.push({"observations": {"created": [a, b]}})
    await tablet.pull_all()
    await phone.push({"observations": {"created": [c], "updated": [{**a, "notes": "windy"}],
                                       "deleted": [b["id"]]}})
    changes = await tablet.pull_all()
    obs = changes["observations"]
    assert [o["id"] for o in obs["created"]] == [c["id"]]
    assert [(o["id"], o["notes"]) for o in obs["updated"]] == [(a["id"], "windy")]
    assert obs["deleted"] == [b["id"]]
    assert changes["taxa"] == {"created": [], "updated": [], "deleted": []}


async def test_replayed_push_changes_nothing_and_create_of_known_id_updates(
    client: httpx.AsyncClient,
) -> None:
    world = await make_world()
    phone = await make_device(client, world)
    record = observation(world)
    batch = {"observations": {"created": [record]}}
    assert (await phone.push(batch)).json()["counts"]["applied"] == 1
    before = await Observation.get(id=record["id"])
    replay = await phone.push(batch)
    assert replay.json()["results"]["observations"] == [{"id": record["id"],
                                                         "status": "unchanged"}]
    after = await Observation.get(id=record["id"])
    assert after.updated_seq == before.updated_seq
    assert await Observation.all().count() == 1
    edited = await phone.push({"observations": {"created": [{**record, "status": "no",
                                                             "intensity": None}]}})
    assert edited.json()["counts"]["applied"] == 1
    assert (await Observation.get(id=record["id"])).status == "no"
    assert await Observation.all().count() == 1


async def test_server_owned_fields_in_a_push_are_ignored(client: httpx.AsyncClient) -> None:
    world = await make_world()
    phone = await make_device(client, world)
    record = observation(world, review_status="verified", quality_flags="[]",
                         verified_taxon_id=str(world.oak.id), server_created_at="2000-01-01")
    assert (await phone.push({"observations": {"created": [record]}})).json()["counts"][
        "applied"] == 1
    stored = await Observation.get(id=record["id"])
    assert stored.review_status == "auto_accepted"  # by the quality checks, not the push
    assert stored.verified_taxon_id is None  # type: ignore[attr-defined]


async def test_another_devices_change_is_a_conflict_with_the_servers_version(
    client: httpx.AsyncClient,
) -> None:
    world = await make_world()
    phone = await make_device(client, world)
    tablet = phone.another_device()
    record = observation(world)
    await phone.push({"observations": {"created": [record]}})
    await phone.pull_all()
    await tablet.pull_all()
    assert (await tablet.push({"observations": {"updated": [{**record, "notes": "tablet"}]}})
            ).json()["counts"]["applied"] == 1
    r = await phone.push({"observations": {"updated": [{**record, "notes": "phone"}]}})
    result = r.json()["results"]["observations"][0]
    assert result["status"] == "rejected" and result["code"] == "conflict"
    assert result["server_record"]["notes"] == "tablet"
    assert r.json()["experimentalRejectedIds"] == {"observations": [record["id"]]}
    assert (await Observation.get(id=record["id"])).notes == "tablet"
    # After pulling (and merging), the phone's push applies.
    await phone.pull_all()
    r = await phone.push({"observations": {"updated": [{**record, "notes": "merged"}]}})
    assert r.json()["counts"]["applied"] == 1


async def test_own_earlier_push_with_a_lost_response_is_not_a_conflict(
    client: httpx.AsyncClient,
) -> None:
    world = await make_world()
    phone = await make_device(client, world)
    record = observation(world)
    await phone.push({"observations": {"created": [record]}})
    await phone.pull_all()
    # Edit, push (response lost: cursor not advanced), edit again, push.
    await phone.push({"observations": {"updated": [{**record, "notes": "one"}]}})
    r = await phone.push({"observations": {"updated": [{**record, "notes": "two"}]}})
    assert r.json()["counts"]["applied"] == 1
    assert (await Observation.get(id=record["id"])).notes == "two"


async def test_an_older_push_of_the_same_device_is_superseded(
    client: httpx.AsyncClient,
) -> None:
    """The stamp (last_pulled_at, push_count) of the push that wrote a record
    orders the pushes of its device; another device's late push is still a
    conflict."""
    world = await make_world()
    phone = await make_device(client, world)
    tablet = phone.another_device()
    record = observation(world)
    await phone.push({"observations": {"created": [record]}}, push_count=1)
    await phone.pull_all()
    old = phone.cursor

    async def push(device: Device, notes: str, **kw: Any) -> tuple[str, str | None]:
        r = await device.push({"observations": {"updated": [{**record, "notes": notes}]}}, **kw)
        assert r.status_code == 200, r.text
        [result] = r.json()["results"]["observations"]
        return result["status"], result.get("code")

    async def stored() -> tuple[str, int]:
        row = await Observation.get(id=record["id"])
        return row.notes, row.updated_seq

    assert await push(phone, "v1", cursor=old, push_count=2) == ("applied", None)
    await phone.pull_all()
    assert await push(phone, "v2", push_count=3) == ("applied", None)
    before = await stored()
    # The delayed v1: a lower cursor (and count) than the push that wrote v2.
    assert await push(phone, "v1", cursor=old, push_count=2) == ("rejected", "superseded")
    assert await push(phone, "v1", cursor=old) == ("rejected", "superseded")
    assert await stored() == before  # nothing written, no sequence number taken
    # Same cursor: the count orders; the same stamp is a retry and applies.
    assert await push(phone, "v0", push_count=2) == ("rejected", "superseded")
    assert await push(phone, "v2", push_count=3) == ("unchanged", None)
    assert await push(phone, "v3", push_count=3) == ("applied", None)
    assert await push(phone, "v4", push_count=4) == ("applied", None)
    # Without a count the cursor alone orders: equal applies, lower is superseded.
    assert await push(phone, "v5") == ("rejected", "superseded")  # (cursor, 0) < (cursor, 4)
    await phone.pull_all()
    assert await push(phone, "v5") == ("applied", None)
    assert await push(phone, "v6") == ("applied", None)
    # A device restored from a backup counts from 1 again: its cursor outranks the count.
    await phone.pull_all()
    assert await push(phone, "v7", push_count=1) == ("applied", None)
    # Another device's late push is a conflict, not superseded.
    await tablet.pull_all()
    tablet_cursor = tablet.cursor
    await phone.pull_all()
    assert await push(phone, "v8", push_count=2) == ("applied", None)
    assert await push(tablet, "tablet", cursor=tablet_cursor) == ("rejected", "conflict")
    assert (await stored())[0] == "v8"
    r = await phone.push({"observations": {"updated": [record]}}, push_count=-1)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_parameter")


async def test_reviewer_changes_never_conflict_and_sync_back(client: httpx.AsyncClient) -> None:
    world = await make_world()
    phone = await make_device(client, world)
    record = observation(world)
    await phone.push({"observations": {"created": [record]}})
    await phone.pull_all()
    # A reviewer verifies and corrects the phenophase (server-owned fields).
    conn = Observation._meta.db
    seq = await next_seq(conn)
    await Observation.filter(id=record["id"]).update(
        review_status="verified", verified_phenophase_id=world.leaves.id, updated_seq=seq
    )
    r = await phone.push({"observations": {"updated": [{**record, "notes": "later edit"}]}})
    assert r.json()["counts"]["applied"] == 1
    changes = await phone.pull_all()
    pulled = changes["observations"]["updated"][0]
    assert pulled["review_status"] == "verified"
    assert pulled["verified_phenophase_id"] == str(world.leaves.id)
    assert pulled["notes"] == "later edit"


async def test_bad_records_are_rejected_one_by_one_and_the_rest_applies(
    client: httpx.AsyncClient,
) -> None:
    world = await make_world()
    phone = await make_device(client, world)
    good = observation(world)
    bad = {
        "unknown_taxon": observation(world, taxon_id="999999"),
        "phenophase_not_valid_for_taxon": observation(world, phenophase_id=str(world.singing.id)),
        "invalid_record": observation(world, latitude=123),
        "future_date": observation(world, observed_at="2099-05-01T10:00:00+02:00"),
        "invalid_id": observation(world, id="../../etc/passwd"),
        "invalid_intensity": observation(world, intensity="lots"),
        "unknown_project": observation(world, project_id="424242"),
    }
    wrong_type = observation(world, status=True)
    unknown_column = observation(world, colour="green")
    no_offset = observation(world, observed_at="2026-02-14T10:30:00")
    r = await phone.push({
        "observations": {"created": [good, *bad.values(), wrong_type, unknown_column,
                                     no_offset]},
        "comets": {"created": [{"id": "a" * 16}]},
        "taxa": {"created": [{"id": "b" * 16}]},
    })
    assert r.status_code == 200
    body = r.json()
    by_id = {x["id"]: x for x in body["results"]["observations"]}
    assert by_id[good["id"]]["status"] == "applied"
    for code, record in bad.items():
        assert by_id[record["id"]]["code"] == code, (code, by_id[record["id"]])
        assert by_id[record["id"]]["message"]
    for record in (wrong_type, unknown_column, no_offset):
        assert by_id[record["id"]]["code"] == "invalid_record"
    assert body["results"]["comets"][0]["code"] == "unknown_table"
    assert body["results"]["taxa"][0]["code"] == "read_only_table"
    assert len(body["experimentalRejectedIds"]["observations"]) == 10
    assert [o.id for o in await Observation.all()] == [good["id"]]


async def test_reference_ids_in_any_valid_form_name_the_same_rows(
    client: httpx.AsyncClient,
) -> None:
    """The push loads only the projects, taxa and phenophases its records name:
    "7", 7 and 7.0 name the same row; ids beyond any stored one, and rows
    deleted since, are unknown (a rejection, never an error)."""
    world = await make_world()
    gone = await make_project(slug="gone")
    gone.is_deleted = True
    await gone.save()
    phone = await make_device(client, world)
    p, t, f = world.project.id, world.hazel.id, world.open_flowers.id
    good = [observation(world, project_id=p, taxon_id=float(t), phenophase_id=f"{f}"),
            observation(world, project_id=float(p), taxon_id=t, phenophase_id=f)]
    bad = {
        "unknown_project": [observation(world, project_id=2**63 - 1),
                            observation(world, project_id="9" * 18),
                            observation(world, project_id=str(gone.id))],
        "unknown_taxon": [observation(world, taxon_id=-1)],
        "unknown_phenophase": [observation(world, phenophase_id=2**62)],
    }
    r = await phone.push({"observations": {
        "created": [*good, *(x for records in bad.values() for x in records)]}})
    assert r.status_code == 200, r.text
    by_id = {x["id"]: x for x in r.json()["results"]["observations"]}
    assert [by_id[x["id"]]["status"] for x in good] == ["applied", "applied"]
    for code, records in bad.items():
        assert [by_id[x["id"]].get("code") for x in records] == [code] * len(records)


async def test_malformed_envelopes_are_4xx_and_change_nothing(client: httpx.AsyncClient) -> None:
    world = await make_world()
    phone = await make_device(client, world)
    headers = {"Authorization": f"Bearer {phone.token}", "content-type": "application/json"}
    cases = [
        b"not json",
        b"[]",
        b'{"changes": []}',
        b'{"changes": {"observations": []}}',
        b'{"changes": {"observations": {"created": {}}}}',
        b'{"changes": {"observations": {"upserted": []}}}',
        json.dumps({"changes": {"observations": {"created": [observation(world)]}},
                    "extra": 1}).encode(),
    ]
    for body in cases:
        r = await client.post(PUSH, content=body, headers=headers)
        assert 400 <= r.status_code < 500, (body, r.status_code)
        assert r.json()["error"]["code"] in ("invalid_json", "validation_failed")
    r = await client.post(PUSH, params={"last_pulled_at": "yesterday"},
                          json={"changes": {}}, headers=headers)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_parameter"
    assert not await Observation.exists()


async def test_schema_versions_and_bad_parameters(client: httpx.AsyncClient) -> None:
    world = await make_world()
    phone = await make_device(client, world)
    headers = {"Authorization": f"Bearer {phone.token}"}
    r = await client.get("/api/v1/sync/pull", params={"schema_version": "0"}, headers=headers)
    assert r.status_code == 426 and r.json()["error"]["code"] == "upgrade_required"
    for params in ({"schema_version": "99"}, {"limit": "0"}, {"limit": "x"},
                   {"last_pulled_at": "-1"}, {"migration": "{bad"},
                   {"migration": json.dumps({"from": 1, "tables": ["comets"]})}):
        r = await client.get("/api/v1/sync/pull", params=params, headers=headers)
        assert r.status_code == 400, params
    assert (await client.get("/api/v1/sync/pull")).status_code == 401


async def test_pages_are_consistent_prefixes(client: httpx.AsyncClient) -> None:
    world = await make_world()
    phone = await make_device(client, world)
    records = [observation(world) for _ in range(30)]
    await phone.push({"observations": {"created": records}})
    tablet = phone.another_device()
    seen: list[str] = []
    cursors = []
    while True:
        body = await tablet.pull(limit=7)
        cursors.append(body["timestamp"])
        seen += [o["id"] for o in body["changes"]["observations"]["created"]]
        size = sum(len(s["created"]) for s in body["changes"].values())
        if not body["has_more"]:
            break
        assert size == 7, "a page is cut short only between rows of one sequence number"
    assert cursors == sorted(cursors)
    assert sorted(seen) == sorted(r["id"] for r in records) and len(seen) == len(set(seen))


async def test_migration_backfills_the_tables_a_client_adds(client: httpx.AsyncClient) -> None:
    world = await make_world()
    phone = await make_device(client, world)
    await phone.pull_all()
    migration = json.dumps({"from": 0, "tables": ["taxa"], "columns": []})
    body = await phone.pull(migration=migration)
    assert len(body["changes"]["taxa"]["created"]) >= 30


async def test_old_cursor_after_tombstone_purge_gets_a_full_resync(
    client: httpx.AsyncClient,
) -> None:
    world = await make_world()
    phone = await make_device(client, world)
    tablet = phone.another_device()
    keep, gone = observation(world), observation(world)
    await phone.push({"observations": {"created": [keep, gone]}})
    await tablet.pull_all()
    await phone.push({"observations": {"deleted": [gone["id"]]}})
    assert await purge_tombstones(0, now=datetime.now(UTC) + timedelta(seconds=1)) == 1
    body = await tablet.pull()
    assert body.get("full_resync") is True
    assert [o["id"] for o in body["changes"]["observations"]["created"]] == [keep["id"]]
    assert (await tablet.pull()).get("full_resync") is None


async def test_photos_sync_after_their_observation(client: httpx.AsyncClient) -> None:
    world = await make_world()
    phone = await make_device(client, world)
    obs = observation(world)
    photo = {"id": "p" * 16, "observation_id": obs["id"], "sha256": "a" * 64}
    orphan = {"id": "q" * 16, "observation_id": "z" * 16}
    r = await phone.push({"photos": {"created": [photo, orphan]},
                          "observations": {"created": [obs]}})
    results = {x["id"]: x for x in r.json()["results"]["photos"]}
    assert results[photo["id"]]["status"] == "applied"
    assert results[orphan["id"]]["code"] == "unknown_observation"
    changes = await phone.pull_all()
    assert created(changes, "photos")[0]["upload_state"] == "pending"


async def test_another_users_id_is_never_overwritten_nor_revealed(
    client: httpx.AsyncClient,
) -> None:
    world = await make_world()
    anna, mallory = await make_device(client, world), await make_device(client, world)
    record = observation(world, notes="secret spot")
    await anna.push({"observations": {"created": [record]}})
    r = await mallory.push({"observations": {"updated": [{**record, "notes": "mine"}],
                                             "deleted": [record["id"]]}})
    results = r.json()["results"]["observations"]
    assert {x["code"] for x in results} == {"id_taken"}
    assert "secret" not in r.text
    stored = await Observation.get(id=record["id"])
    assert stored.notes == "secret spot" and not stored.is_deleted


async def test_flags_travel_as_a_json_string(client: httpx.AsyncClient) -> None:
    world = await make_world()
    phone = await make_device(client, world)
    record = observation(world)
    await phone.push({"observations": {"created": [record]}})
    await QualityFlag.create(observation_id=record["id"], code="coarse_location", message="x")
    changes = await phone.pull_all()
    assert json.loads(created(changes)[0]["quality_flags"]) == ["coarse_location"]


async def test_joining_a_closed_project_brings_it_to_the_device(
    client: httpx.AsyncClient,
) -> None:
    world = await make_world()
    closed = await make_project(slug="closed", is_open=False)
    phone = await make_device(client, world)
    await phone.pull_all()
    _, coordinator = await make_user("coordinator", project=closed)
    me = (await client.get("/api/v1/me", headers=auth(phone.token))).json()["username"]
    r = await client.put(f"/api/v1/projects/closed/members/{me}", json={"role": "volunteer"},
                         headers=auth(coordinator))
    assert r.status_code == 200
    changes = await phone.pull_all()
    slugs = [p["slug"] for p in changes["projects"]["created"] + changes["projects"]["updated"]]
    assert slugs == ["closed"]
    assert await Project.filter(slug="closed").count() == 1


async def test_a_processed_photo_syncs_back_with_derivatives_and_exif(
    client: httpx.AsyncClient, db: object
) -> None:
    from tests.factories_photos import jpeg, run_jobs
    from tests.factories_sync import Device
    from tests.server.test_uploads import upload_file

    world = await make_world()
    user, token = await make_user("volunteer", project=world.project)
    phone = Device(client, token)
    obs = observation(world)
    photo = {"id": "f" * 16, "observation_id": obs["id"]}
    await phone.push({"observations": {"created": [obs]}, "photos": {"created": [photo]}})
    await phone.pull_all()
    data = jpeg(taken="2026:02:14 10:29:00", lat=51.9634, lon=5.6812)
    assert (await upload_file(client, token, photo["id"], data)).status_code == 204
    await run_jobs(db)  # type: ignore[arg-type]
    changes = await phone.pull_all()
    synced = changes["photos"]["updated"][0]
    assert synced["upload_state"] == "ready"
    assert set(json.loads(synced["derivatives"])) == {"320", "1024", "2048"}
    assert abs(synced["exif_latitude"] - 51.9634) < 1e-3
    assert isinstance(json.loads(synced["exif"]), dict)


async def test_a_devices_own_pushes_come_back_as_updated(client: httpx.AsyncClient) -> None:
    world = await make_world()
    phone = await make_device(client, world)
    tablet = phone.another_device()
    await phone.pull_all()
    await tablet.pull_all()
    record = observation(world)
    await phone.push({"observations": {"created": [record]}})

    async def pull_as(device: object, device_id: str) -> dict[str, list[object]]:
        r = await client.get("/api/v1/sync/pull", params={"last_pulled_at": str(
            device.cursor)}, headers={**auth(phone.token), "X-Device-Id": device_id})  # type: ignore[attr-defined]
        return r.json()["changes"]["observations"]  # type: ignore[no-any-return]

    own = await pull_as(phone, phone.device_id)
    other = await pull_as(tablet, tablet.device_id)
    assert [o["id"] for o in own["updated"]] == [record["id"]] and own["created"] == []  # type: ignore[index]
    assert [o["id"] for o in other["created"]] == [record["id"]]  # type: ignore[index]


async def test_concurrent_edits_from_two_devices_give_one_conflict_not_a_lost_update(
    client: httpx.AsyncClient,
) -> None:
    import asyncio

    world = await make_world()
    first = await make_device(client, world)
    devices = [first, *(first.another_device() for _ in range(5))]
    record = observation(world)
    await devices[0].push({"observations": {"created": [record]}})
    for device in devices:
        await device.pull_all()
    responses = await asyncio.gather(*(
        device.push({"observations": {"updated": [{**record, "notes": f"device {i}"}]}})
        for i, device in enumerate(devices)
    ))
    statuses = sorted(r.json()["results"]["observations"][0]["status"] for r in responses)
    assert statuses == ["applied"] + ["rejected"] * 5


async def test_a_nul_in_one_record_rejects_that_record_only(client: httpx.AsyncClient) -> None:
    """PostgreSQL cannot store or even compare text with NUL: such a record is
    refused on its own, the rest of the batch is applied."""
    world = await make_world()
    phone = await make_device(client, world)
    good, bad = observation(world), observation(world, notes="a\x00b")
    bad_id = observation(world, id="abc\x00def0123456789")
    r = await phone.push({"observations": {"created": [good, bad, bad_id],
                                           "deleted": ["x\x00y"]}})
    assert r.status_code == 200, r.text
    results = {x["id"]: x for x in r.json()["results"]["observations"]}
    assert results[good["id"]]["status"] == "applied"
    assert results[bad["id"]]["code"] == "invalid_record"
    assert results[bad_id["id"]]["code"] == "invalid_id"
    assert results["x\x00y"]["code"] == "invalid_id"
    assert await Observation.filter(id=good["id"]).exists()
    r = await client.post("/api/v1/sync/push", json={"changes": {}},
                          headers={**auth(phone.token), "X-Device-Id": "ok"},
                          params={"last_pulled_at": "a\x00"})
    assert r.status_code == 400

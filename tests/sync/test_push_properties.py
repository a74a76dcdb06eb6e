"""Property-based: the sync envelopes (sync/push.py, sync/pull.py, their
JSON Schemas and the push rules) take any body or query a client sends.

- any JSON body to push: 200 with a result per record, or a documented 4xx
  with the one error shape;
- near-valid records with any field replaced by any JSON value: 200, and
  every record is applied, unchanged or rejected with a stable code;
- a pushed valid record reads back the same (push -> pull round trip);
- any pull query: 200, 400 or 426;
- ``observed_at`` parses to an instant and offset that format back to the
  same instant, or is rejected as ``invalid_record``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import messages
from schemas.sync import Rejection
from sync.records import RecordRejected, format_observed_at, parse_observed_at
from tests.factories import auth
from tests.factories_sync import make_device, make_world, observation
from tests.properties import FAST, JSON, REQUESTS, SCALE, call

CODES = {str(c) for c in Rejection}
FIELDS = ["id", "project_id", "taxon_id", "phenophase_id", "status", "intensity",
          "observed_at", "latitude", "longitude", "coordinate_uncertainty_m", "geoprivacy",
          "notes", "license", "created_at", "updated_at", "review_status", "_status"]


@FAST
@given(st.text(max_size=40) | st.datetimes(timezones=st.timezones()).map(datetime.isoformat))
def test_observed_at_parses_round_trips_or_is_rejected(value: str) -> None:
    try:
        utc, offset = parse_observed_at(value)
    except RecordRejected as rejected:
        assert rejected.code is Rejection.INVALID_RECORD
        return
    assert utc.utcoffset() is not None and -24 * 60 < offset < 24 * 60
    again, again_offset = parse_observed_at(format_observed_at(utc, offset))
    assert (again, again_offset) == (utc, offset)


async def test_any_push_body_gets_results_or_a_documented_4xx(
    client: httpx.AsyncClient,
) -> None:
    world = await make_world()
    device = await make_device(client, world)
    loop = asyncio.get_running_loop()
    envelope = st.fixed_dictionaries({"changes": st.dictionaries(
        st.sampled_from(["observations", "photos", "projects", "nope"]),
        st.fixed_dictionaries({}, optional={
            "created": st.lists(JSON, max_size=3), "updated": st.lists(JSON, max_size=3),
            "deleted": st.lists(st.text(max_size=20) | JSON, max_size=3)}),
        max_size=3)}, optional={"device_id": JSON})

    @REQUESTS
    @given(JSON | envelope, st.none() | st.text(max_size=12))
    def check(body: Any, cursor: str | None) -> None:
        r = call(loop, client.post(
            "/api/v1/sync/push", params={} if cursor is None else {"last_pulled_at": cursor},
            json=body, headers=auth(device.token)))
        if r.status_code == 200:
            assert not messages.problems("sync-push-response", r.json())
        else:
            assert r.status_code in (400, 413, 415, 422), r.text
            assert r.json()["error"]["code"]

    await asyncio.to_thread(check)


async def test_any_field_of_a_record_is_applied_or_rejected_with_a_code(
    client: httpx.AsyncClient,
) -> None:
    world = await make_world()
    device = await make_device(client, world)
    loop = asyncio.get_running_loop()

    @REQUESTS
    @given(st.dictionaries(st.sampled_from(FIELDS), JSON, min_size=1, max_size=3))
    def check(replaced: dict[str, Any]) -> None:
        record = {**observation(world), **replaced}
        r = call(loop, device.push({"observations": {"created": [record]}}))
        if r.status_code != 200:  # a JSON value the envelope refuses (NaN, NUL, 2**64)
            assert r.status_code == 422, r.text
            return
        body = r.json()
        assert not messages.problems("sync-push-response", body)
        [result] = body["results"]["observations"]
        assert result["status"] in ("applied", "unchanged", "rejected")
        if result["status"] == "rejected":
            assert result["code"] in CODES, result

    await asyncio.to_thread(check)


async def test_a_pushed_record_pulls_back_the_same(client: httpx.AsyncClient) -> None:
    world = await make_world()
    loop = asyncio.get_running_loop()
    device = await make_device(client, world)
    values = st.fixed_dictionaries({
        "latitude": st.floats(-90, 90), "longitude": st.floats(-180, 180),
        "notes": st.text(st.characters(blacklist_categories=["Cs"],
                                       blacklist_characters="\x00"), max_size=50),
        "geoprivacy": st.sampled_from(["open", "obscured", "private"]),
        "status": st.sampled_from(["yes", "no", "unknown"]),
    })

    @settings(REQUESTS, max_examples=15 * SCALE)  # a pull per example: the page grows
    @given(values)
    def check(changed: dict[str, Any]) -> None:
        record = {**observation(world), "id": str(uuid.UUID(int=len(seen) + 1)), **changed}
        record["intensity"] = record["intensity"] if record["status"] == "yes" else None
        seen.append(record["id"])
        r = call(loop, device.push({"observations": {"created": [record]}}))
        assert r.status_code == 200 and r.json()["counts"]["applied"] == 1, r.text
        pulled = call(loop, device.client.get(
            "/api/v1/sync/pull", params={"limit": "500"}, headers=auth(device.token))).json()
        by_id = {o["id"]: o for o in pulled["changes"]["observations"]["created"]
                 + pulled["changes"]["observations"]["updated"]}
        back = by_id[record["id"]]
        for key, value in changed.items():
            assert back[key] == value, (key, value, back[key])

    seen: list[str] = []
    await asyncio.to_thread(check)


async def test_any_pull_query_is_a_page_or_a_documented_4xx(client: httpx.AsyncClient) -> None:
    world = await make_world()
    device = await make_device(client, world)
    loop = asyncio.get_running_loop()
    value = (st.text(max_size=20) | st.integers(-5, 2**70).map(str)
             | JSON.map(json.dumps) | st.just("null"))
    query = st.dictionaries(
        st.sampled_from(["last_pulled_at", "schema_version", "limit", "migration"]), value)

    @REQUESTS
    @given(query)
    def check(params: dict[str, str]) -> None:
        r = call(loop, client.get("/api/v1/sync/pull", params=params,
                                  headers=auth(device.token)))
        if r.status_code == 200:
            assert not messages.problems("sync-pull-response", r.json())
        else:
            assert r.status_code in (400, 426), (params, r.text)
            assert r.json()["error"]["code"]

    await asyncio.to_thread(check)

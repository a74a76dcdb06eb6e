"""Property-based: ``conflicting_status`` flags exactly the pairs a brute force
finds (same observer, taxon and phenophase, "yes" against "no", the same local
day, within 100 m), whether the other record was stored before or arrives in
the same push, whatever the UTC offsets."""

from __future__ import annotations

import asyncio
import math
import uuid
from datetime import date, datetime, timedelta, timezone
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from tortoise.transactions import in_transaction

from server.models.observations import QualityFlag
from server.quality.check import distance_m
from server.quality.conflicting_status import LOCAL_DAY_SQL
from tests.factories_sync import make_device, make_world, observation
from tests.properties import REQUESTS, call

CENTER = (51.9634, 5.6812)
DAY = date(2025, 4, 10)
# Steps around the centre, in degrees of latitude: within, near and beyond
# 100 m (0.0009 degrees) and beyond the query's box (0.002).
STEPS = [0.0, 0.0004, -0.0006, 0.00089, 0.00091, -0.0013, 0.0021, -0.003]

records = st.lists(st.fixed_dictionaries({
    "status": st.sampled_from(["yes", "yes", "no", "no", "unknown"]),
    "day": st.integers(0, 1),
    "minute": st.integers(0, 24 * 60 - 1),
    "offset": st.sampled_from([-600, -120, 0, 60, 330, 780, 840]),
    "dlat": st.sampled_from(STEPS),
    "dlon": st.sampled_from(STEPS),
}), min_size=1, max_size=6)


def _record(world: Any, spec: dict[str, Any]) -> dict[str, Any]:
    tz = timezone(timedelta(minutes=spec["offset"]))
    local = datetime.combine(DAY + timedelta(days=spec["day"]), datetime.min.time(), tzinfo=tz)
    lat = CENTER[0] + spec["dlat"]
    lon = CENTER[1] + spec["dlon"] / math.cos(math.radians(CENTER[0]))
    return observation(
        world, id=str(uuid.uuid4()), status=spec["status"],
        intensity="5_24" if spec["status"] == "yes" else None,
        observed_at=(local + timedelta(minutes=spec["minute"])).isoformat(),
        latitude=round(lat, 7), longitude=round(lon, 7),
    )


def _expected(record: dict[str, Any], others: list[dict[str, Any]]) -> list[str]:
    if record["status"] == "unknown":
        return []
    day = datetime.fromisoformat(record["observed_at"]).date()
    return sorted(
        o["id"] for o in others
        if o["id"] != record["id"] and {o["status"], record["status"]} == {"yes", "no"}
        and datetime.fromisoformat(o["observed_at"]).date() == day
        and distance_m(record["latitude"], record["longitude"], o["latitude"],
                       o["longitude"]) <= 100.0
    )


async def _found(record_id: str) -> list[str]:
    flag = await QualityFlag.get_or_none(observation_id=record_id, code="conflicting_status")
    return [] if flag is None else sorted(flag.details["conflicting_ids"])  # type: ignore[index]


async def test_conflicting_status_finds_exactly_the_brute_force_pairs(
    client: httpx.AsyncClient,
) -> None:
    world = await make_world()
    loop = asyncio.get_running_loop()

    @REQUESTS
    @given(records, records)
    def check(stored_specs: list[dict[str, Any]], batch_specs: list[dict[str, Any]]) -> None:
        device = call(loop, make_device(client, world))  # a new observer: nothing stored
        stored = [_record(world, s) for s in stored_specs]
        batch = [_record(world, s) for s in batch_specs]
        for chunk in (stored, batch):
            r = call(loop, device.push({"observations": {"created": chunk}}))
            assert r.json()["counts"]["applied"] == len(chunk), r.text
        for record in batch:
            assert call(loop, _found(record["id"])) == _expected(record, stored + batch)

    await asyncio.to_thread(check)


async def test_the_query_reads_the_local_day_index(db: Starlette) -> None:
    """The query must repeat the index's expression exactly (migration 0010),
    or the database falls back to reading every record of the observer."""
    conn = db.state.database.connection()
    dialect = conn.capabilities.dialect
    day = LOCAL_DAY_SQL[dialect].replace("observed_", "o.observed_")
    query = (
        "SELECT o.id FROM observations o WHERE o.user_id = 1 AND o.taxon_id = 2 "
        f"AND o.phenophase_id = 3 AND o.status = 'no' AND {day} = "
        f"{'DATE ' if dialect == 'postgres' else ''}'2025-04-10' "
        "AND o.latitude >= 51.9 AND o.latitude <= 52.0"
    )
    if dialect == "postgres":
        async with in_transaction() as tx:
            await tx.execute_query("SET LOCAL enable_seqscan = off")  # an empty table
            plan = await tx.execute_query_dict("EXPLAIN " + query)
    else:
        plan = await conn.execute_query_dict("EXPLAIN QUERY PLAN " + query)
    text = " ".join(str(v) for row in plan for v in row.values())
    assert "idx_observation_same_local_day" in text, text

"""The pull's fast path (``pull_records``) against the plain conversion
(``observation_wire``, which pushes still use): the same records, value for
value, for the edge values of every column, as each backend's driver returns
them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from tortoise.transactions import in_transaction

from schemas.sync import SCHEMA_VERSION, columns_for, tables_for
from server.models.accounts import User
from server.models.observations import Observation
from server.models.reference import Phenophase, Project, Taxon
from server.sync_store import HORIZON_ID, OrmSyncStore, flag_codes, observation_wire
from sync.store import Change
from tests.factories import make_project, make_user
from tests.factories_observations import make_flag, make_observation, make_phenophase, make_taxon

WHOLE = datetime(2024, 3, 14, 9, 30, tzinfo=UTC)
MICRO = datetime(2024, 3, 14, 23, 59, 59, 123456, tzinfo=UTC)
ONE_MICRO = datetime(2023, 12, 31, 23, 59, 59, 1, tzinfo=UTC)
# (observed_at, offset in minutes, device clocks (created, updated))
EDGES: list[tuple[datetime, int, tuple[datetime | None, datetime | None]]] = [
    (WHOLE, 0, (None, None)),
    (MICRO, 345, (MICRO, MICRO)),  # +05:45, a day later locally
    (MICRO, -210, (WHOLE, MICRO)),  # -03:30
    (ONE_MICRO, 840, (ONE_MICRO, None)),  # +14:00, a year later locally
    (WHOLE, -720, (datetime(1970, 1, 1, tzinfo=UTC), WHOLE)),  # -12:00; the epoch
    (datetime(1900, 1, 1, 0, 0, 0, 999999, tzinfo=UTC), 60,
     (datetime(1969, 12, 31, 23, 59, 59, 999, tzinfo=UTC), None)),  # before the epoch
    (datetime(2100, 6, 30, 12, tzinfo=UTC), 1, (datetime(2100, 1, 1, 0, 0, 0, 500000,
                                                          tzinfo=UTC), None)),
]


async def _observations(user: User, project: Project, taxon: Taxon,
                        phenophase: Phenophase) -> list[Observation]:
    made = []
    for n, (observed, offset, (created, updated)) in enumerate(EDGES, 1):
        made.append(await make_observation(
            user, project, taxon, phenophase, observed_at=observed,
            observed_utc_offset_min=offset, client_created_at=created,
            client_updated_at=updated, created_seq=n, updated_seq=n,
            intensity=None if n % 2 else "5_24", latitude=-89.999999 + n / 3,
            longitude=179.1 / n, coordinate_uncertainty_m=None if n % 3 else 0.1 * n,
            notes="" if n % 2 else "Knoppen \N{EN DASH} zon \U0001f33c",
            review_status="pending" if n % 2 else "needs_review",
            client_changed_device=None if n % 2 else "phone-1",
            verified_taxon=None if n % 2 else taxon,
            verified_phenophase=None if n % 2 else phenophase,
        ))
    return made


async def _old_conversion(conn: Any, user_id: int) -> list[Change]:
    """What pulls sent before the fast path: ``SELECT *`` as dicts, then
    ``observation_wire``."""
    rows = await conn.execute_query_dict(
        "SELECT * FROM observations WHERE user_id = "
        + ("$1" if conn.capabilities.dialect == "postgres" else "?")
        + " ORDER BY updated_seq", [user_id])
    flags = await flag_codes([r["id"] for r in rows if not r["is_deleted"]], conn)
    return [Change(int(r["updated_seq"]), int(r["created_seq"]), bool(r["is_deleted"]),
                   r["client_changed_device"], observation_wire(r, flags.get(r["id"])))
            for r in rows]


async def test_pulled_observations_equal_the_plain_conversion_for_edge_values(
    db: Starlette,
) -> None:
    user, _ = await make_user()
    project, taxon, phenophase = await make_project(), await make_taxon(), await make_phenophase()
    made = await _observations(user, project, taxon, phenophase)
    await make_flag(made[1], "out_of_season")
    await make_flag(made[1], "duplicate_suspect")  # sorted on the wire
    await make_flag(made[2], "far_from_range")
    await make_flag(made[3], "far_from_range")  # deleted: its flags are not sent
    made[3].is_deleted = True
    await made[3].save(update_fields=["is_deleted"])
    # Rows of one push share their server timestamps (formatted once), and the
    # next row's differ again.
    await Observation.filter(id__in=[made[4].id, made[5].id]).update(
        server_created_at=MICRO, server_updated_at=WHOLE)

    async with in_transaction() as conn:
        fast = await OrmSyncStore(conn).changes(
            "observations", user.id, 0, 100, columns_for("observations", SCHEMA_VERSION))
        old = await _old_conversion(conn, user.id)

    assert [c.record["id"] for c in fast] == [o.id for o in made]
    for new, before in zip(fast, old, strict=True):
        assert new == before
        # Equal and of the same types (1 == 1.0 == True): the JSON is the same.
        assert [type(v) for v in new.record.values()] == \
            [type(v) for v in before.record.values()]
        assert list(new.record) == list(before.record)  # and in the same order
    assert fast[1].record["quality_flags"] == '["duplicate_suspect", "out_of_season"]'
    assert fast[1].record["observed_at"] == "2024-03-15T05:44:59.123456+05:45"
    assert fast[3].deleted and not fast[2].deleted
    assert fast[0].record["observed_at"] == "2024-03-14T09:30:00+00:00"
    assert [c.record["server_updated_at"] for c in fast[4:6]] == ["2024-03-14T09:30:00+00:00"] * 2
    assert fast[6].record["server_updated_at"] != fast[5].record["server_updated_at"]


async def test_a_page_ends_at_its_limit_after_the_cursor(db: Starlette) -> None:
    user, _ = await make_user()
    project, taxon, phenophase = await make_project(), await make_taxon(), await make_phenophase()
    made = await _observations(user, project, taxon, phenophase)
    async with in_transaction() as conn:
        page = await OrmSyncStore(conn).changes(
            "observations", user.id, 2, 3, columns_for("observations", SCHEMA_VERSION))
    assert [c.seq for c in page] == [3, 4, 5]
    assert [c.record["id"] for c in page] == [o.id for o in made[2:5]]


async def test_counters_hold_the_counter_the_horizon_and_each_tables_newest_row(
    db: Starlette,
) -> None:
    user, _ = await make_user()
    project, taxon, phenophase = await make_project(), await make_taxon(), await make_phenophase()
    await _observations(user, project, taxon, phenophase)
    async with in_transaction() as conn:
        store = OrmSyncStore(conn)
        before = await store.counters(tables_for(SCHEMA_VERSION))
        await conn.execute_query(f"INSERT INTO sync_counter (id, value) VALUES ({HORIZON_ID}, 5)")
        after = await store.counters(("photos", "observations"))
    assert (before.seq, before.horizon) == (project.updated_seq, 0)
    assert before.newest == {"projects": project.updated_seq, "taxa": 0, "phenophases": 0,
                             "observations": len(EDGES), "photos": 0}
    assert (after.horizon, after.newest) == (5, {"photos": 0, "observations": len(EDGES)})

"""The pull's fast path (``pull_records``) against the plain conversion
(``observation_wire``, which pushes still use): the same records, value for
value, for the edge values of every column, as each backend's driver returns
them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from tortoise.transactions import in_transaction

from schemas.sync import SCHEMA_VERSION, columns_for, tables_for
from server.models.accounts import User
from server.models.observations import Observation
from server.models.reference import Phenophase, Project, Taxon
from server.sync_store import (
    HORIZON_ID,
    OrmSyncStore,
    flag_codes,
    observation_wire,
    pull_records,
)
from sync.store import Change
from tests.factories import make_project, make_user
from tests.factories_observations import make_flag, make_observation, make_phenophase, make_taxon
from tests.properties import FAST

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


# --- the conversion alone, on values as either driver returns them -------------
_ZONE = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
_STORED = st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2200, 1, 1),
                       timezones=_ZONE | st.just(UTC))


def _as_stored(value: datetime | None, sqlite: bool) -> Any:
    """SQLite holds the text its adapter wrote (``isoformat(" ")``)."""
    return value.isoformat(" ") if sqlite and value is not None else value


@st.composite
def _rows(draw: st.DrawFn) -> tuple[list[tuple[Any, ...]], list[dict[str, Any]],
                                    list[list[str] | None]]:
    """Rows in ``PULL_COLUMNS`` order and the same rows as ``SELECT *`` dicts."""
    sqlite = draw(st.booleans())
    shared = draw(_STORED)  # the server timestamps of one push
    tuples, dicts, flags = [], [], []
    for n in range(draw(st.integers(1, 6))):
        observed = draw(_STORED)
        created = draw(st.none() | _STORED)
        updated = draw(st.none() | st.just(created) | _STORED)
        # Equal instants in other zones too: the text differs.
        server = [draw(st.just(shared) | st.just(shared.astimezone(draw(_ZONE))) | _STORED)
                  for _ in range(2)]
        codes = draw(st.none() | st.lists(st.sampled_from(["b_code", "a_code", "c"]),
                                          min_size=1, max_size=3, unique=True))
        deleted = draw(st.booleans())
        row = {
            "id": f"id-{n}", "project_id": 1, "taxon_id": 22, "phenophase_id": 333,
            "status": "yes", "intensity": draw(st.none() | st.just("5_24")),
            "observed_at": _as_stored(observed, sqlite),
            "observed_utc_offset_min": draw(st.integers(-14 * 60, 14 * 60)),
            "latitude": draw(st.floats(-90, 90)), "longitude": draw(st.floats(-180, 180)),
            "coordinate_uncertainty_m": draw(st.none() | st.floats(0, 1e6)),
            "geoprivacy": "open", "notes": draw(st.text(max_size=5)), "license": "CC0-1.0",
            "client_created_at": _as_stored(created, sqlite),
            "client_updated_at": _as_stored(updated, sqlite),
            "review_status": "pending", "verified_taxon_id": draw(st.none() | st.just(22)),
            "verified_phenophase_id": None,
            "server_created_at": _as_stored(server[0], sqlite),
            "server_updated_at": _as_stored(server[1], sqlite),
            "updated_seq": n + 1, "created_seq": 1, "is_deleted": deleted,
            "client_changed_device": None,
        }
        dicts.append(row)
        flags.append(None if deleted else codes)
        text = [None if row[k] is None else str(row[k]) for k in (
            "project_id", "taxon_id", "phenophase_id", "verified_taxon_id",
            "verified_phenophase_id")]
        aggregate = None if codes is None else json.dumps(codes)
        tuples.append((
            row["id"], *text[:3], row["status"], row["intensity"], row["observed_at"],
            row["observed_utc_offset_min"], row["latitude"], row["longitude"],
            row["coordinate_uncertainty_m"], row["geoprivacy"], row["notes"], row["license"],
            row["client_created_at"], row["client_updated_at"], row["review_status"],
            *text[3:], row["server_created_at"], row["server_updated_at"], n + 1, 1,
            int(deleted) if sqlite else deleted, None,
            (aggregate or "[]") if sqlite else aggregate))
    return tuples, dicts, flags


@FAST
@given(_rows())
def test_pull_records_equal_observation_wire(
    rows: tuple[list[tuple[Any, ...]], list[dict[str, Any]], list[list[str] | None]],
) -> None:
    tuples, dicts, flags = rows
    fast = [c.record for c in pull_records(tuples)]
    assert fast == [observation_wire(r, f) for r, f in zip(dicts, flags, strict=True)]

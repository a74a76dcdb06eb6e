"""``conflicting_status``: the same observer said "yes" and "no" for the same
taxon and phenophase at the same place on the same (local) day."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import date, datetime
from typing import Any, NamedTuple

from schemas.observation import Status
from server.quality.check import Check, CheckContext, Finding, Subject, distance_m, local_time

SAME_PLACE_M = 100.0
# Degrees of latitude (and, scaled, of longitude) around a record that hold
# every point within SAME_PLACE_M (0.0009 degrees), with room to spare: the
# query narrows candidates with them, the exact distance decides.
_LAT_MARGIN = 0.002
# Query rows per query (11 parameters each; PostgreSQL allows 32,767).
_CHUNK = 1000


class Other(NamedTuple):
    id: str
    status: str
    observed_at: datetime
    observed_utc_offset_min: int
    latitude: float
    longitude: float


def _day(obs: Any) -> date:
    return local_time(obs).date()


def _opposite(status: str) -> str:
    return "no" if status == Status.YES else "yes"


def _box(obs: Subject) -> tuple[float, float, float, float]:
    """Latitudes and longitudes around a record that hold every point within
    SAME_PLACE_M of it."""
    lat0, lat1 = obs.latitude - _LAT_MARGIN, obs.latitude + _LAT_MARGIN
    reach = max(abs(lat0), abs(lat1))
    lon0, lon1 = -1000.0, 1000.0
    if reach < 89.0:
        margin = _LAT_MARGIN / math.cos(math.radians(reach))
        west, east = obs.longitude - margin, obs.longitude + margin
        if -180.0 < west and east < 180.0:
            lon0, lon1 = west, east
    return lat0, lat1, lon0, lon1


# The observer's local date of a stored record, as the expression index of
# migration 0010 computes it (a query must repeat it exactly to use the index):
# observed_at in UTC shifted by the record's own UTC offset.
LOCAL_DAY_SQL = {
    "sqlite": "date(observed_at, observed_utc_offset_min || ' minutes')",
    "postgres": ("((observed_at AT TIME ZONE 'UTC') + observed_utc_offset_min "
                 "* interval '1 minute')::date"),
}


async def prepare(subjects: list[Subject], ctx: CheckContext) -> None:
    """One query for the batch: for each record, the stored records of the
    opposite status of the same observer, taxon and phenophase on the same
    local day, in a small box around it.  The index on (observer, taxon,
    phenophase, status, local day, latitude) finds them with one seek per
    record and a short range of latitudes: records of other days or farther
    north or south are never read.  Records of the batch itself are matched
    in memory (their stored version may be older than the one being checked)."""
    checked = [s for s in subjects if s.status != Status.UNKNOWN]
    groups: dict[tuple[Any, ...], list[Subject]] = defaultdict(list)
    days: dict[str, date] = {}
    for s in checked:
        day = days[s.id] = _day(s)
        groups[(s.user_id, s.taxon_id, s.phenophase_id, str(s.status), day)].append(s)
    batch = {s.id for s in subjects}
    dialect = ctx.conn.capabilities.dialect
    postgres = dialect == "postgres"
    # PostgreSQL types the VALUES columns from the first row's casts.
    casts = ("::int", "::int", "::int", "::int", "::varchar", "::date",
             "::float8", "::float8", "::float8", "::float8")
    width = len(casts)
    local_day = LOCAL_DAY_SQL[dialect].replace("observed_", "o.observed_")
    found: dict[str, list[Other]] = defaultdict(list)
    for first in range(0, len(checked), _CHUNK):
        chunk = checked[first:first + _CHUNK]
        values: list[Any] = []
        for n, s in enumerate(chunk, first):
            day = days[s.id]
            values += [n, s.user_id, s.taxon_id, s.phenophase_id, _opposite(str(s.status)),
                       day if postgres else day.isoformat(), *_box(s)]
        if postgres:
            rows = ", ".join(
                "(" + ", ".join(f"${i * width + j + 1}{casts[j] if i == 0 else ''}"
                                for j in range(width)) + ")"
                for i in range(len(chunk)))
            deleted = f"${len(values) + 1}"
        else:
            rows = ", ".join(["(" + ", ".join("?" * width) + ")"] * len(chunk))
            deleted = "?"
        values.append(False)
        match = (
            "o.user_id = b.user_id AND o.taxon_id = b.taxon_id "
            "AND o.phenophase_id = b.phenophase_id AND o.status = b.status "
            f"AND {local_day} = b.day "
            "AND o.latitude >= b.lat0 AND o.latitude <= b.lat1 "
            f"AND o.longitude >= b.lon0 AND o.longitude <= b.lon1 AND o.is_deleted = {deleted}"
        )
        columns = ("o.id, o.status, o.observed_at, o.observed_utc_offset_min, o.latitude, "
                   "o.longitude")
        if postgres:
            # One index probe per row of b.  As a plain join, PostgreSQL hashes
            # on the equal columns, which one observer's records of a species
            # all share, and compares every stored record with every row of b.
            # OFFSET 0 keeps the subquery from being flattened into that join.
            source = (f"b CROSS JOIN LATERAL (SELECT {columns} FROM observations o "
                      f"WHERE {match} OFFSET 0) o")
        else:
            source = f"b JOIN observations o ON {match}"
        sql = (
            "WITH b (n, user_id, taxon_id, phenophase_id, status, day, lat0, lat1, "
            f"lon0, lon1) AS (VALUES {rows}) "
            "SELECT b.n AS k_n, o.id, o.status, o.observed_at, o.observed_utc_offset_min, "
            f"o.latitude, o.longitude FROM {source}"
        )
        for r in await ctx.conn.execute_query_dict(sql, values):
            if r["id"] in batch:
                continue
            observed = r["observed_at"]
            if not isinstance(observed, datetime):
                observed = datetime.fromisoformat(str(observed))
            other = Other(r["id"], str(r["status"]), observed, int(r["observed_utc_offset_min"]),
                          float(r["latitude"]), float(r["longitude"]))
            s = checked[int(r["k_n"])]
            if _day(other) == days[s.id]:
                found[s.id].append(other)
    for (user_id, taxon_id, phenophase_id, status, day), members in groups.items():
        same_day = groups.get((user_id, taxon_id, phenophase_id, _opposite(status), day), [])
        for s in members:
            ctx.status_candidates[s.id] = [*found.get(s.id, ()), *same_day]


def run(obs: Subject, ctx: CheckContext) -> Finding | None:
    if obs.status == Status.UNKNOWN:
        return None
    # ``prepare`` kept only candidates of the subject's local day; a latitude
    # farther than the margin is farther than SAME_PLACE_M, whatever the longitude.
    lat, lon = obs.latitude, obs.longitude
    conflicts = [
        other for other in ctx.status_candidates.get(obs.id, ())
        if abs(other.latitude - lat) <= _LAT_MARGIN
        and distance_m(lat, lon, other.latitude, other.longitude) <= SAME_PLACE_M
    ]
    if not conflicts:
        return None
    day = _day(obs)
    ctx.partners.update(o.id for o in conflicts)
    return Finding(
        CHECK.code,
        f"On {day:%Y-%m-%d} the same observer also reported {conflicts[0].status!s:} for this "
        f"taxon and phenophase within {SAME_PLACE_M:.0f} m ({len(conflicts)} record(s)): "
        f"one of the two is probably wrong.",
        {"conflicting_ids": sorted(o.id for o in conflicts), "date": day.isoformat()},
    )


CHECK = Check(
    "conflicting_status",
    "Conflicting status",
    "The observer reported both 'yes' and 'no' for the same taxon and phenophase at the "
    "same place on the same day. One of them may be a different plant or a mis-tap; look "
    "at both records (listed under the observer's recent records).",
    run,
    prepare,
)

"""``conflicting_status``: the same observer said "yes" and "no" for the same
taxon and phenophase at the same place on the same (local) day."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple

from schemas.observation import Status
from server.quality.check import Check, CheckContext, Finding, Subject, distance_m, local_time

SAME_PLACE_M = 100.0
# Degrees of latitude (and, scaled, of longitude) around a record that hold
# every point within SAME_PLACE_M (0.0009 degrees), with room to spare: the
# query narrows candidates with them, the exact distance decides.
_LAT_MARGIN = 0.002
# Subjects per query (11 parameters each; PostgreSQL allows 32,767).
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


def _bounds(s: Subject) -> tuple[datetime, datetime, float, float, float, float]:
    """A box around ``s`` holding every observation that can conflict with it:
    any UTC offset (under 24 h) maps its local day into these 72 hours."""
    start = datetime.combine(_day(s), datetime.min.time(), tzinfo=s.observed_at.tzinfo)
    lat0, lat1 = s.latitude - _LAT_MARGIN, s.latitude + _LAT_MARGIN
    reach = abs(s.latitude) + _LAT_MARGIN
    lon0, lon1 = -1000.0, 1000.0
    if reach < 89.0:
        margin = _LAT_MARGIN / math.cos(math.radians(reach))
        if -180.0 < s.longitude - margin and s.longitude + margin < 180.0:
            lon0, lon1 = s.longitude - margin, s.longitude + margin
    return start - timedelta(days=1), start + timedelta(days=2), lat0, lat1, lon0, lon1


async def prepare(subjects: list[Subject], ctx: CheckContext) -> None:
    """One query for the batch: the stored records of the opposite status
    near each subject.  Records of the batch itself are matched in memory
    (their stored version may be older than the one being checked)."""
    judged = [s for s in subjects if s.status != Status.UNKNOWN]
    batch = {s.id for s in subjects}
    postgres = ctx.conn.capabilities.dialect == "postgres"
    types = ("varchar", "int", "int", "int", "varchar", "timestamptz", "timestamptz",
             "float8", "float8", "float8", "float8")
    found: dict[str, list[Any]] = defaultdict(list)
    for first in range(0, len(judged), _CHUNK):
        chunk = judged[first:first + _CHUNK]
        values: list[Any] = []
        rows = []
        for s in chunk:
            marks = []
            for kind, value in zip(types, (s.id, s.user_id, s.taxon_id, s.phenophase_id,
                                          _opposite(s.status), *_bounds(s)), strict=True):
                values.append(value)
                marks.append(f"${len(values)}::{kind}" if postgres else "?")
            rows.append("(" + ", ".join(marks) + ")")
        values.append(False)
        deleted = f"${len(values)}" if postgres else "?"
        sql = (
            "WITH b (subject, user_id, taxon_id, phenophase_id, status, t0, t1, lat0, lat1, "
            f"lon0, lon1) AS (VALUES {', '.join(rows)}) "
            "SELECT b.subject, o.id, o.status, o.observed_at, o.observed_utc_offset_min, "
            "o.latitude, o.longitude FROM b JOIN observations o "
            "ON o.taxon_id = b.taxon_id AND o.phenophase_id = b.phenophase_id "
            "AND o.observed_at >= b.t0 AND o.observed_at < b.t1 "
            "AND o.user_id = b.user_id AND o.status = b.status "
            "AND o.latitude >= b.lat0 AND o.latitude <= b.lat1 "
            f"AND o.longitude >= b.lon0 AND o.longitude <= b.lon1 AND o.is_deleted = {deleted}"
        )
        for r in await ctx.conn.execute_query_dict(sql, values):
            if r["id"] in batch:
                continue
            observed = r["observed_at"]
            if not isinstance(observed, datetime):
                observed = datetime.fromisoformat(str(observed))
            found[r["subject"]].append(Other(
                r["id"], str(r["status"]), observed, int(r["observed_utc_offset_min"]),
                float(r["latitude"]), float(r["longitude"]),
            ))
    # The batch's own records, by observer, taxon, phenophase, status and day.
    groups: dict[tuple[Any, ...], list[Subject]] = defaultdict(list)
    for s in judged:
        groups[(s.user_id, s.taxon_id, s.phenophase_id, str(s.status), _day(s))].append(s)
    for s in judged:
        key = (s.user_id, s.taxon_id, s.phenophase_id, _opposite(s.status), _day(s))
        found[s.id] += groups.get(key, [])
    ctx.status_candidates.update(found)


def run(obs: Subject, ctx: CheckContext) -> Finding | None:
    if obs.status == Status.UNKNOWN:
        return None
    day = _day(obs)
    conflicts = [
        other for other in ctx.status_candidates.get(obs.id, [])
        if _day(other) == day
        and distance_m(obs.latitude, obs.longitude, other.latitude, other.longitude)
        <= SAME_PLACE_M
    ]
    if not conflicts:
        return None
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

"""``out_of_season``: the day of year is far outside the distribution of
verified "yes" observations of the same taxon and phenophase.

Robust statistics: the median day and the median absolute deviation (MAD),
so a few wrong verified records do not move the season.  Days of year are
circular (a winter phenophase spans New Year): the sample is first rotated
around its circular mean, then median and MAD are taken on the rotated
values.  Judged only above ``MIN_SAMPLES`` verified observations.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any

from schemas.observation import ReviewStatus, Status
from server.models.rows import as_datetime, placeholder
from server.quality.check import Check, CheckContext, Finding, Subject, local_time

MIN_SAMPLES = 20
# The newest verified observations are the sample (seasons shift over decades).
MAX_SAMPLES = 2000
# Robust z-score above which a day is out of season (3.5 is Iglewicz & Hoaglin's).
THRESHOLD = 3.5
# A tight sample (MAD of a day or two) must not flag a record a week off.
MIN_SCALE_DAYS = 7.0
MAD_TO_SD = 1.4826
YEAR = 365.25


@dataclass(frozen=True)
class Season:
    center: float  # day of year, 1..366
    scale: float  # days (MAD scaled to a standard deviation, at least MIN_SCALE_DAYS)
    n: int


def offset(day: float, reference: float) -> float:
    """Signed days from ``reference`` to ``day`` the short way round the year."""
    return (day - reference + YEAR / 2) % YEAR - YEAR / 2


def circular_mean(days: list[float]) -> float:
    angles = [2 * math.pi * d / YEAR for d in days]
    s = sum(math.sin(a) for a in angles)
    c = sum(math.cos(a) for a in angles)
    return (math.atan2(s, c) * YEAR / (2 * math.pi)) % YEAR


def season(days: list[float]) -> Season:
    reference = circular_mean(days)
    offsets = [offset(d, reference) for d in days]
    median = statistics.median(offsets)
    mad = statistics.median(abs(o - median) for o in offsets)
    return Season((reference + median) % YEAR, max(MAD_TO_SD * mad, MIN_SCALE_DAYS), len(days))


def day_of_year(obs: Any) -> int:
    return local_time(obs).timetuple().tm_yday


async def prepare(subjects: list[Subject], ctx: CheckContext) -> None:
    """One query per (taxon, phenophase) of the batch: the verified sample."""
    for key in sorted({(s.taxon_id, s.phenophase_id) for s in subjects
                       if s.status == Status.YES}):
        if key not in ctx.season_samples:
            days = ctx.season_samples[key] = await _sample(ctx, *key)
            if len(days) >= MIN_SAMPLES:
                ctx.seasons[key] = season(days)


async def _sample(ctx: CheckContext, taxon_id: int, phenophase_id: int) -> list[float]:
    """The local days of year of the newest verified "yes" records (plain SQL
    along the index on review status, taxon, phenophase, status and time:
    a push asks this once per taxon and phenophase)."""
    conn = ctx.conn
    rows = await conn.execute_query_dict(
        "SELECT observed_at, observed_utc_offset_min, verified_taxon_id, "
        "verified_phenophase_id FROM observations "
        f"WHERE review_status = {placeholder(conn, 1)} AND taxon_id = {placeholder(conn, 2)} "
        f"AND phenophase_id = {placeholder(conn, 3)} AND status = {placeholder(conn, 4)} "
        f"AND is_deleted = {placeholder(conn, 5)} "
        f"ORDER BY observed_at DESC LIMIT {int(MAX_SAMPLES)}",
        [str(ReviewStatus.VERIFIED), taxon_id, phenophase_id, str(Status.YES), False],
    )
    days = []
    for r in rows:
        vt, vp = r["verified_taxon_id"], r["verified_phenophase_id"]
        if vt not in (None, taxon_id) or vp not in (None, phenophase_id):
            continue  # a reviewer moved it to another taxon or phenophase
        observed = as_datetime(r["observed_at"])
        assert observed is not None
        local = observed.astimezone(UTC) + timedelta(minutes=int(r["observed_utc_offset_min"]))
        days.append(float(local.timetuple().tm_yday))
    return days


def run(obs: Subject, ctx: CheckContext) -> Finding | None:
    if obs.status != Status.YES:
        return None  # "not seen" in any season is information, not doubt
    found = ctx.seasons.get((obs.taxon_id, obs.phenophase_id))
    if found is None:
        return None  # fewer than MIN_SAMPLES verified records: not judged
    day = day_of_year(obs)
    off = offset(day, found.center)
    score = abs(off) / found.scale
    if score <= THRESHOLD:
        return None
    usual = round(found.center) or 366
    return Finding(
        CHECK.code,
        f"Day {day} of the year is {abs(off):.0f} days {'before' if off < 0 else 'after'} the "
        f"usual day ({usual}) of {obs.phenophase.name.lower()} in "
        f"{obs.taxon.scientific_name}, learned from {found.n} verified observations "
        f"({score:.1f} robust standard deviations).",
        {"day_of_year": day, "usual_day": usual, "scale_days": round(found.scale, 1),
         "score": round(score, 2), "sample_size": found.n},
    )


CHECK = Check(
    "out_of_season",
    "Out of season",
    "The date is far from when verified observers saw this phenophase in this taxon "
    f"(median and median absolute deviation of at least {MIN_SAMPLES} verified records). "
    "Early and late records are valuable when they are right: check the photo and the "
    "taxon before rejecting.",
    run,
    prepare,
)

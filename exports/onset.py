"""Onset day of year per year, from a release's site phenometrics, for the
datasets page's chart."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

#: Sites whose last "no" before the first "yes" is further back than this give
#: no usable onset (Nature's Notebook's advice for onset estimates).
MAX_DAYS_SINCE_PRIOR_NO = 30


@dataclass(frozen=True)
class Onset:
    year: int
    median: float
    earliest: int
    latest: int
    sites: int



def choices(release: Path) -> list[tuple[str, str]]:
    """(scientificName, phenophaseID) pairs that have phenometrics."""
    path = release / "data" / "phenometrics.parquet"
    if not path.exists():
        return []
    table = pq.read_table(path, columns=["scientificName", "phenophaseID"])
    pairs = table.group_by(["scientificName", "phenophaseID"]).aggregate([])
    return sorted(zip(pairs["scientificName"].to_pylist(), pairs["phenophaseID"].to_pylist(),
                      strict=True))


def onset_by_year(release: Path, scientific_name: str, phenophase_id: str) -> list[Onset]:
    path = release / "data" / "phenometrics.parquet"
    if not path.exists():
        return []
    table = pq.read_table(
        path, columns=["year", "firstYesDayOfYear", "numDaysSincePriorNo"],
        filters=[("scientificName", "=", scientific_name), ("phenophaseID", "=", phenophase_id)],
    )
    prior = table["numDaysSincePriorNo"]
    table = table.filter(pc.and_(pc.is_valid(prior),
                                 pc.less_equal(prior, MAX_DAYS_SINCE_PRIOR_NO)))
    by_year: dict[int, list[int]] = {}
    for year, doy in zip(table["year"].to_pylist(), table["firstYesDayOfYear"].to_pylist(),
                         strict=True):
        by_year.setdefault(year, []).append(doy)
    return [
        Onset(year, statistics.median(days), min(days), max(days), len(days))
        for year, days in sorted(by_year.items())
    ]

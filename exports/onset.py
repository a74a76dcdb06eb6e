"""Onset day of year per year, from a release's site phenometrics, for the
datasets page's chart."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from exports import schema

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



def _read(path: Path) -> pa.Table:
    types = {f.name: f.type for f in schema.PHENOMETRICS}
    return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=types))


def choices(release: Path) -> list[tuple[str, str]]:
    """(scientificName, phenophaseID) pairs that have phenometrics."""
    path = release / "phenometrics.csv"
    if not path.exists():
        return []
    table = _read(path)
    pairs = table.group_by(["scientificName", "phenophaseID"]).aggregate([])
    return sorted(zip(pairs["scientificName"].to_pylist(), pairs["phenophaseID"].to_pylist(),
                      strict=True))


def onset_by_year(release: Path, scientific_name: str, phenophase_id: str) -> list[Onset]:
    path = release / "phenometrics.csv"
    if not path.exists():
        return []
    table = _read(path)
    table = table.filter(pc.and_(pc.equal(table["scientificName"], scientific_name),
                                 pc.equal(table["phenophaseID"], phenophase_id)))
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

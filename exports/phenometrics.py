"""Site phenometrics, in the manner of Nature's Notebook.

Per site, taxon, phenophase and year: the first and last "yes", the number of
"yes" records, the days since the last "no" before the first "yes" (how
precise the onset is) and the days until the first "no" after the last "yes".

A site is a published location rounded to three decimals (about 100 m), so
generalised records count at their cell centre and private records, which
have no location, are left out.  The rows of a year arrive in time order;
the state kept is one small record per group, not per observation.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from exports import schema


@dataclass
class _Group:
    first_yes: int | None = None
    last_yes: int | None = None
    yes_count: int = 0
    prior_no: int | None = None  # latest "no" before the first "yes"
    next_no: int | None = None  # first "no" after the latest "yes"


class Phenometrics:
    def __init__(self) -> None:
        self._groups: dict[tuple[str, str, str, int], _Group] = {}
        self._sites: dict[str, tuple[float, float]] = {}

    def add(self, batch: pa.RecordBatch) -> None:
        cols = batch.select(
            ["decimalLatitude", "decimalLongitude", "scientificName", "phenophaseID", "year",
             "startDayOfYear", "phenophaseStatus"]
        ).to_pydict()
        groups = self._groups
        for lat, lon, name, phase, year, doy, status in zip(*cols.values(), strict=True):
            if lat is None or lon is None or status == "unknown":
                continue
            site = f"{lat:.3f},{lon:.3f}"
            key = (site, name, phase, year)
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Group()
                self._sites.setdefault(site, (round(lat, 3), round(lon, 3)))
            if status == "yes":
                if group.first_yes is None:
                    group.first_yes = doy
                group.last_yes = doy
                group.yes_count += 1
                group.next_no = None
            elif group.first_yes is None:
                group.prior_no = doy
            elif group.next_no is None:
                group.next_no = doy

    def table(self) -> pa.Table:
        rows = []
        for (site, name, phase, year), g in sorted(self._groups.items()):
            if g.first_yes is None or g.last_yes is None:
                continue
            lat, lon = self._sites[site]
            rows.append({
                "siteID": site,
                "decimalLatitude": lat,
                "decimalLongitude": lon,
                "scientificName": name,
                "phenophaseID": phase,
                "year": year,
                "firstYesDayOfYear": g.first_yes,
                "lastYesDayOfYear": g.last_yes,
                "numYesRecords": g.yes_count,
                "numDaysSincePriorNo": (
                    g.first_yes - g.prior_no if g.prior_no is not None else None
                ),
                "numDaysUntilNextNo": g.next_no - g.last_yes if g.next_no is not None else None,
            })
        return pa.Table.from_pylist(rows, schema=schema.PHENOMETRICS)

    def finish_year(self) -> pa.Table:
        """The finished year's rows; the state is cleared (years are independent)."""
        done = self.table()
        self._groups.clear()
        self._sites.clear()
        return done

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

import pyarrow as pa
import pyarrow.compute as pc

from exports import schema

# State per group, as a list for speed: first yes, last yes, yes count, the
# latest "no" before the first "yes", the first "no" after the latest "yes".
FIRST, LAST, COUNT, PRIOR, NEXT = range(5)


class Phenometrics:
    """Accumulates one year at a time (``finish_year`` between years)."""

    def __init__(self) -> None:
        self._groups: dict[tuple[float, float, str, str], list[int | None]] = {}
        self._year: int | None = None

    def add(self, batch: pa.RecordBatch) -> None:
        keep = pc.and_(
            pc.and_(pc.is_valid(batch["decimalLatitude"]), pc.is_valid(batch["decimalLongitude"])),
            pc.not_equal(batch["phenophaseStatus"], "unknown"),
        )
        batch = batch.filter(keep)
        if not batch.num_rows:
            return
        self._year = batch["year"][0].as_py()
        lat = pc.round(batch["decimalLatitude"], 3).to_pylist()
        lon = pc.round(batch["decimalLongitude"], 3).to_pylist()
        yes = pc.equal(batch["phenophaseStatus"], "yes").to_pylist()
        groups = self._groups
        for key, is_yes, doy in zip(
            zip(lat, lon, batch["scientificName"].to_pylist(),
                batch["phenophaseID"].to_pylist(), strict=True),
            yes, batch["startDayOfYear"].to_pylist(), strict=True,
        ):
            g = groups.get(key)
            if g is None:
                g = groups[key] = [None, None, 0, None, None]
            if is_yes:
                if g[FIRST] is None:
                    g[FIRST] = doy
                g[LAST] = doy
                g[COUNT] += 1  # type: ignore[operator]
                g[NEXT] = None
            elif g[FIRST] is None:
                g[PRIOR] = doy
            elif g[NEXT] is None:
                g[NEXT] = doy

    def finish_year(self) -> pa.Table:
        """The finished year's rows; the state is cleared (years are independent)."""
        rows = []
        for (lat, lon, name, phase), g in sorted(self._groups.items()):
            first, last, count, prior, following = g
            if first is None or last is None:
                continue
            rows.append({
                "siteID": f"{lat:.3f},{lon:.3f}", "decimalLatitude": lat,
                "decimalLongitude": lon, "scientificName": name, "phenophaseID": phase,
                "year": self._year, "firstYesDayOfYear": first, "lastYesDayOfYear": last,
                "numYesRecords": count,
                "numDaysSincePriorNo": first - prior if prior is not None else None,
                "numDaysUntilNextNo": following - last if following is not None else None,
            })
        self._groups.clear()
        return pa.Table.from_pylist(rows, schema=schema.PHENOMETRICS)

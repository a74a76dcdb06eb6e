"""Privacy, applied once, at publish time (DESIGN.md, "Open data").

- ``obscured`` records and sensitive taxa: coordinates snapped to the centre
  of a grid cell, the uncertainty widened so the circle covers the cell, and
  ``dataGeneralizations`` says so.
- ``private`` records: no coordinates at all, ``informationWithheld`` says so.
- observers: a keyed HMAC of the account id, stable across releases for one
  key, unlinkable to the account without it.
"""

from __future__ import annotations

import hashlib
import hmac
import math

import pyarrow as pa
import pyarrow.compute as pc

# Metres per degree of latitude, and of longitude at the equator (its largest).
_M_PER_DEG_LAT = 110_574.0
_M_PER_DEG_LON = 111_320.0

WITHHELD_PRIVATE = "coordinates withheld at the observer's request (geoprivacy private)"


class Privacy:
    def __init__(self, key: bytes, grid_degrees: float = 0.1) -> None:
        if not grid_degrees > 0:
            raise ValueError("the grid size must be a positive number of degrees")
        self.key = key
        self.grid = grid_degrees
        self._pseudonyms: dict[int, str] = {}
        # Half the diagonal of the widest cell (at the equator): a circle of
        # this radius around the centre covers any cell of the grid.
        self.cell_radius_m = math.hypot(
            grid_degrees * _M_PER_DEG_LAT / 2, grid_degrees * _M_PER_DEG_LON / 2
        )

    def pseudonym(self, user_id: int) -> str:
        found = self._pseudonyms.get(user_id)
        if found is None:
            digest = hmac.new(self.key, f"user:{user_id}".encode(), hashlib.sha256).hexdigest()
            found = self._pseudonyms[user_id] = "observer-" + digest[:16]
        return found

    def pseudonyms(self, user_ids: pa.Array) -> pa.Array:
        unique = pc.unique(user_ids)
        names = pa.array([self.pseudonym(u) for u in unique.to_pylist()], pa.string())
        return pc.take(names, pc.index_in(user_ids, value_set=unique))

    def generalisation_note(self, reason: str) -> str:
        return (
            f"coordinates generalised to the centre of a {self.grid:g} degree grid cell ({reason})"
        )

    def _snap(self, values: pa.Array, limit: float) -> pa.Array:
        cell = pc.floor(pc.divide(values, self.grid))
        centre = pc.round(pc.multiply(pc.add(cell, 0.5), self.grid), 6)
        return pc.max_element_wise(pc.min_element_wise(centre, limit), -limit)

    def apply(
        self,
        latitude: pa.Array,
        longitude: pa.Array,
        uncertainty: pa.Array,
        geoprivacy: pa.Array,
        sensitive: pa.Array,
    ) -> tuple[pa.Array, pa.Array, pa.Array, pa.Array, pa.Array]:
        """Published (latitude, longitude, uncertainty, informationWithheld,
        dataGeneralizations) for one batch."""
        private = pc.equal(geoprivacy, "private")
        obscured = pc.and_(pc.invert(private), pc.equal(geoprivacy, "obscured"))
        sensitive = pc.and_(pc.invert(private), pc.fill_null(sensitive, False))
        generalise = pc.or_(obscured, sensitive)
        null_number = pa.scalar(None, pa.float64())
        lat = pc.if_else(generalise, self._snap(latitude, 90.0), latitude)
        lon = pc.if_else(generalise, self._snap(longitude, 180.0), longitude)
        widened = pc.ceil(pc.add(pc.fill_null(uncertainty, 0.0), self.cell_radius_m))
        unc = pc.if_else(generalise, widened, uncertainty)
        lat = pc.if_else(private, null_number, lat)
        lon = pc.if_else(private, null_number, lon)
        unc = pc.if_else(private, null_number, unc)
        null_text = pa.scalar(None, pa.string())
        withheld = pc.if_else(private, pa.scalar(WITHHELD_PRIVATE), null_text)
        generalised = pc.if_else(
            sensitive,
            pa.scalar(self.generalisation_note("sensitive taxon")),
            pc.if_else(
                obscured,
                pa.scalar(self.generalisation_note("geoprivacy obscured")),
                null_text,
            ),
        )
        return lat, lon, unc, withheld, generalised

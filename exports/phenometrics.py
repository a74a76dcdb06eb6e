"""Site phenometrics, in the manner of Nature's Notebook.

Per site, taxon, phenophase and year: the first and last "yes", the number of
"yes" records, the days since the last "no" before the first "yes" (how
precise the onset is) and the days until the first "no" after the last "yes".

A site is a published location rounded to three decimals (about 100 m), so
generalised records count at their cell centre and private records, which
have no location, are left out.  The rows of a year arrive in time order;
the state kept is one small record per group, not per observation: numpy
arrays sorted by an integer group key, merged with each batch's per-group
summary, so no Python code runs per row.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from exports import schema

# A group key packs (latitude, longitude) in thousandths of a degree and the
# codes of the taxon and the phenophase into one int64.
_LAT_SPAN = 180_001
_LON_SPAN = 360_001
_TAXA = 1 << 15
_PHASES = 1 << 11
_NONE = 0  # a day of year is 1..366: 0 means "none yet"
_BIG = np.iinfo(np.int64).max


class _Codes:
    """Small stable integer codes for strings (taxon names, phenophase codes)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.index: dict[str, int] = {}
        self.names: list[str] = []

    def encode(self, values: pa.Array) -> np.ndarray:
        values = pc.fill_null(values, "")
        unique = pc.unique(values)
        codes = []
        for name in unique.to_pylist():
            code = self.index.get(name)
            if code is None:
                if len(self.names) >= self.limit:
                    raise ValueError(f"more than {self.limit} distinct values for phenometrics")
                code = self.index[name] = len(self.names)
                self.names.append(name)
            codes.append(code)
        positions = pc.index_in(values, value_set=unique).to_numpy()
        return np.asarray(codes, np.int64)[positions]


def _thousandths(values: pa.Array) -> np.ndarray:
    rounded = pc.round(values, 3).to_numpy()
    return np.rint(rounded * 1000).astype(np.int64)


class Phenometrics:
    """Accumulates one year at a time (``finish_year`` between years)."""

    def __init__(self) -> None:
        self._taxa = _Codes(_TAXA)
        self._phases = _Codes(_PHASES)
        self._year: int | None = None
        self._clear()

    def _clear(self) -> None:
        days = np.empty(0, np.int16)
        self._keys = np.empty(0, np.int64)
        # first yes, last yes, latest "no" before the first yes, first "no"
        # after the latest yes (days of year, _NONE when none), yes count.
        self._first = self._last = self._prior = self._next = days
        self._count = np.empty(0, np.int32)

    def add(self, batch: pa.RecordBatch) -> None:
        keep = pc.and_(
            pc.and_(pc.is_valid(batch["decimalLatitude"]), pc.is_valid(batch["decimalLongitude"])),
            pc.not_equal(batch["phenophaseStatus"], "unknown"),
        )
        batch = batch.filter(keep)
        if not batch.num_rows:
            return
        self._year = batch["year"][0].as_py()
        key = (
            (_thousandths(batch["decimalLatitude"]) + 90_000) * _LON_SPAN
            + (_thousandths(batch["decimalLongitude"]) + 180_000)
        ) * (_TAXA * _PHASES) + self._taxa.encode(batch["scientificName"]) * _PHASES + (
            self._phases.encode(batch["phenophaseID"])
        )
        yes = pc.fill_null(pc.equal(batch["phenophaseStatus"], "yes"), False).to_numpy(
            zero_copy_only=False
        )
        doy = batch["startDayOfYear"].to_numpy().astype(np.int16)

        # Sort by group, keeping time order inside each group.
        order = np.argsort(key, kind="stable")
        key, yes, doy = key[order], yes[order], doy[order]
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        group = np.cumsum(np.r_[False, key[1:] != key[:-1]])
        keys = key[starts]
        pos = np.arange(len(key), dtype=np.int64)
        no = ~yes
        first_yes = np.minimum.reduceat(np.where(yes, pos, _BIG), starts)
        last_yes = np.maximum.reduceat(np.where(yes, pos, -1), starts)
        count = np.add.reduceat(yes.astype(np.int64), starts)
        prior = np.maximum.reduceat(np.where(no & (pos < first_yes[group]), pos, -1), starts)
        # With no "yes" in the batch this is the batch's first "no".
        after = np.minimum.reduceat(np.where(no & (pos > last_yes[group]), pos, _BIG), starts)

        def day(p: np.ndarray, valid: np.ndarray) -> np.ndarray:
            return np.where(valid, doy[np.clip(p, 0, len(doy) - 1)], _NONE)

        has_yes = count > 0
        b_first = day(first_yes, has_yes)
        b_last = day(last_yes, has_yes)
        b_prior = day(prior, prior >= 0)
        b_next = day(after, after < _BIG)

        # Groups not seen before join the state, empty.
        at = np.searchsorted(self._keys, keys)
        seen = np.zeros(len(keys), bool)
        if len(self._keys):
            nearest = self._keys[np.minimum(at, len(self._keys) - 1)]
            seen = (at < len(self._keys)) & (nearest == keys)
        if not seen.all():
            new = keys[~seen]
            where = np.searchsorted(self._keys, new)
            zeros = np.zeros(len(new), np.int16)
            self._keys = np.insert(self._keys, where, new)
            self._first = np.insert(self._first, where, zeros)
            self._last = np.insert(self._last, where, zeros)
            self._prior = np.insert(self._prior, where, zeros)
            self._next = np.insert(self._next, where, zeros)
            self._count = np.insert(self._count, where, zeros.astype(np.int32))
            at = np.searchsorted(self._keys, keys)

        s_first = self._first[at]
        started = s_first != _NONE
        # Before any "yes", every "no" moves the prior "no" on.
        self._prior[at] = np.where(~started & (b_prior != _NONE), b_prior, self._prior[at])
        self._first[at] = np.where(started, s_first, b_first)
        self._last[at] = np.where(has_yes, b_last, self._last[at])
        self._count[at] += count
        # A "yes" resets the following "no"; without one, the first "no"
        # after the state's latest "yes" stays.
        s_next = self._next[at]
        keep_next = np.where(s_next != _NONE, s_next, np.where(started, b_next, _NONE))
        self._next[at] = np.where(has_yes, b_next, keep_next)

    def finish_year(self, batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        """The finished year's rows in batches, sorted by site, scientificName
        and phenophaseID; then the state is cleared (years are independent)."""
        done = np.flatnonzero(self._first != _NONE)
        keys = self._keys[done]
        # Codes follow arrival; rank them by name for the published order.
        taxon_rank = _ranks(self._taxa.names)
        phase_rank = _ranks(self._phases.names)
        phase = keys % _PHASES
        taxon = (keys // _PHASES) % _TAXA
        site = keys // (_TAXA * _PHASES)
        order = np.argsort(site * (_TAXA * _PHASES) + taxon_rank[taxon] * _PHASES
                           + phase_rank[phase], kind="stable")
        del keys, phase, taxon, site
        names = pa.array(self._taxa.names, pa.string())
        codes = pa.array(self._phases.names, pa.string())
        for start in range(0, len(order), batch_rows):
            rows = done[order[start : start + batch_rows]]
            key = self._keys[rows]
            site = key // (_TAXA * _PHASES)
            lat_milli = site // _LON_SPAN - 90_000
            lon_milli = site % _LON_SPAN - 180_000
            first, last = self._first[rows], self._last[rows]
            prior, following = self._prior[rows], self._next[rows]
            yield pa.record_batch({
                "siteID": pc.binary_join_element_wise(
                    _fixed3(lat_milli), _fixed3(lon_milli), ","
                ),
                "decimalLatitude": pa.array(lat_milli / 1000, pa.float64()),
                "decimalLongitude": pa.array(lon_milli / 1000, pa.float64()),
                "scientificName": pc.take(names, (key // _PHASES) % _TAXA),
                "phenophaseID": pc.take(codes, key % _PHASES),
                "year": pa.array(np.full(len(rows), self._year or 0), pa.int64()),
                "firstYesDayOfYear": pa.array(first, pa.int64()),
                "lastYesDayOfYear": pa.array(last, pa.int64()),
                "numYesRecords": pa.array(self._count[rows], pa.int64()),
                "numDaysSincePriorNo": pa.array(first - prior, pa.int64(),
                                                mask=prior == _NONE),
                "numDaysUntilNextNo": pa.array(following - last, pa.int64(),
                                               mask=following == _NONE),
            }).cast(schema.PHENOMETRICS)
        self._clear()


def _ranks(names: list[str]) -> np.ndarray:
    ranks = np.empty(len(names), np.int64)
    ranks[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names))
    return ranks


def _fixed3(milli: np.ndarray) -> pa.Array:
    """Thousandths as text with exactly three decimals ("52.100", "-0.005")."""
    sign = pa.array(np.where(milli < 0, "-", ""))
    whole = pa.array(np.abs(milli) // 1000).cast(pa.string())
    frac = pc.utf8_lpad(pa.array(np.abs(milli) % 1000).cast(pa.string()), 3, "0")
    return pc.binary_join_element_wise(sign, whole, ".", frac, "")

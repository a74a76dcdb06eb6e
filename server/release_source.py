"""The database side of a release: ``exports.source.ReleaseSource`` over the
database, with raw SQL streamed from one cursor per year.

Raw SQL on purpose: the export reads every published row, and building a
model object per row would cost more than the rest of the export.  A year is
one query along the ``(observed_at, id)`` index, read in chunks of
``PAGE_ROWS``, so memory is bounded by the chunk size.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from exports.source import (
    OBSERVATION_KEYS,
    ObservationBatch,
    PhenophaseRow,
    PhotoRow,
    TaxonRow,
)
from server.database import Database

PAGE_ROWS = 20_000
#: Local time is at most 14 hours from UTC: a year's rows lie in this margin
#: around the UTC year, and the exporter keeps those of the right local year.
ZONE_MARGIN = timedelta(hours=14)
PUBLISHED = "o.is_deleted = false AND o.review_status <> 'rejected'"

_COLUMNS = """
    o.id, o.user_id, o.project_id,
    COALESCE(o.verified_taxon_id, o.taxon_id) AS taxon_id,
    COALESCE(o.verified_phenophase_id, o.phenophase_id) AS phenophase_id,
    o.status, o.intensity, o.observed_at, o.observed_utc_offset_min,
    o.latitude, o.longitude, o.coordinate_uncertainty_m, o.geoprivacy,
    {notes} AS notes,
    o.license, o.review_status, o.server_updated_at, o.flag_count
"""
_FLAG_COUNT = len(OBSERVATION_KEYS) - 1  # index of flag_count in a row


def _sqlite_reader(path: str) -> sqlite3.Connection:
    # Used by one worker thread at a time, never two at once.
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)


def _columns(rows: list[Any]) -> ObservationBatch:
    """Rows to lists of columns (without ``flag_count``)."""
    columns = [list(c) for c in zip(*rows, strict=True)]
    return dict(zip(OBSERVATION_KEYS[:-1], columns[:-1], strict=True))


class DatabaseReleaseSource:
    def __init__(self, connection: BaseDBAsyncClient, dialect: str,
                 page_rows: int = PAGE_ROWS, sqlite_path: str = "") -> None:
        self.conn = connection
        self.sqlite = dialect == "sqlite"
        self.sqlite_path = sqlite_path
        self.page_rows = page_rows

    @classmethod
    def of(cls, database: Database) -> DatabaseReleaseSource:
        path = database.url[len("sqlite://"):] if database.dialect == "sqlite" else ""
        return cls(database.connection(), database.dialect, sqlite_path=path)

    def _ph(self, index: int) -> str:
        return "?" if self.sqlite else f"${index}"

    def _in(self, count: int, start: int = 1) -> str:
        return ", ".join(self._ph(start + i) for i in range(count))

    def _when(self, moment: datetime) -> Any:
        # SQLite keeps datetimes as ISO text in UTC; compare text with text.
        if self.sqlite:
            return moment.astimezone(UTC).isoformat(sep=" ")
        return moment

    async def _rows(self, sql: str, values: Sequence[Any] = ()) -> list[Any]:
        _, rows = await self.conn.execute_query(sql, list(values))
        return list(rows)

    async def count(self) -> int:
        rows = await self._rows(f"SELECT count(*) FROM observations o WHERE {PUBLISHED}")
        return int(rows[0][0])

    async def years(self) -> list[int]:
        if self.sqlite:
            local = ("CAST(strftime('%Y', o.observed_at, "
                     "o.observed_utc_offset_min || ' minutes') AS INTEGER)")
        else:
            local = ("CAST(extract(year FROM (o.observed_at AT TIME ZONE 'UTC') "
                     "+ make_interval(mins => o.observed_utc_offset_min)) AS INTEGER)")
        rows = await self._rows(
            f"SELECT DISTINCT {local} AS y FROM observations o WHERE {PUBLISHED} ORDER BY y"
        )
        return [int(r[0]) for r in rows]

    async def observations(self, year: int) -> AsyncIterator[ObservationBatch]:
        start = self._when(datetime(year, 1, 1, tzinfo=UTC) - ZONE_MARGIN)
        end = self._when(datetime(year + 1, 1, 1, tzinfo=UTC) + ZONE_MARGIN)
        p = self._ph
        # Notes only of the projects that publish them: their ids are few, and
        # a join per row would cost a fifth of the read.
        noting = [int(r[0]) for r in await self._rows(
            "SELECT id FROM projects WHERE publish_notes = true ORDER BY id"
        )]
        notes = (f"CASE WHEN o.project_id IN ({', '.join(map(str, noting))}) THEN o.notes END"
                 if noting else "NULL")
        sql = (
            f"SELECT {_COLUMNS.format(notes=notes)} FROM observations o "
            f"WHERE {PUBLISHED} AND o.observed_at >= {p(1)} AND o.observed_at < {p(2)} "
            "ORDER BY o.observed_at, o.id"
        )
        carry: list[Any] = []
        async for chunk in self._stream(sql, [start, end]):
            rows = carry + chunk if carry else chunk
            # Hold back the rows that share the last instant: the next chunk
            # may hold more of them, and a batch never splits an instant.
            last = rows[-1][7]
            cut = len(rows)
            while cut and rows[cut - 1][7] == last:
                cut -= 1
            carry, rows = rows[cut:], rows[:cut]
            if rows:
                yield await self._batch(rows)
        if carry:
            yield await self._batch(carry)

    async def _stream(self, sql: str, values: Sequence[Any]) -> AsyncIterator[list[Any]]:
        """The rows of one query in chunks, from one server-side cursor.

        One plain cursor read is the cheapest way through millions of rows:
        no page queries, no ORM objects.  SQLite reads on its own read-only
        connection in a worker thread (WAL: writers go on meanwhile);
        PostgreSQL reads in a read-only REPEATABLE READ transaction, so the
        rows are one snapshot.
        """
        if self.sqlite:
            con = await asyncio.to_thread(_sqlite_reader, self.sqlite_path)
            try:
                cursor = await asyncio.to_thread(con.execute, sql, list(values))
                while chunk := await asyncio.to_thread(cursor.fetchmany, self.page_rows):
                    yield chunk
            finally:
                con.close()
            return
        async with self.conn.acquire_connection() as raw:
            async with raw.transaction(isolation="repeatable_read", readonly=True):
                cursor = await raw.cursor(sql, *values)
                while chunk := await cursor.fetch(self.page_rows):
                    yield chunk

    async def _batch(self, rows: list[Any]) -> ObservationBatch:
        flagged = [r[0] for r in rows if r[_FLAG_COUNT]]
        codes: dict[str, list[str]] = {}
        for start in range(0, len(flagged), 5000):
            chunk = flagged[start : start + 5000]
            found = await self._rows(
                "SELECT observation_id, code FROM quality_flags "
                f"WHERE observation_id IN ({self._in(len(chunk))}) ORDER BY observation_id, code",
                chunk,
            )
            for observation_id, code in found:
                codes.setdefault(observation_id, []).append(code)
        batch = await asyncio.to_thread(_columns, rows)
        batch["flags"] = [codes.get(i, []) for i in batch["id"]] if codes else None
        return batch

    async def taxa(self) -> list[TaxonRow]:
        rows = await self._rows(
            "SELECT id, scientific_name, rank, vernacular_nl, vernacular_en, \"group\", "
            "sensitive FROM taxa ORDER BY scientific_name"
        )
        return [TaxonRow(int(r[0]), r[1], r[2], r[3], r[4], r[5], bool(r[6])) for r in rows]

    async def phenophases(self) -> list[PhenophaseRow]:
        rows = await self._rows(
            "SELECT id, code, name, definition, ppo_iri, groups FROM phenophases ORDER BY code"
        )
        result = []
        for r in rows:
            groups = r[5]
            if isinstance(groups, str):
                groups = json.loads(groups)
            result.append(PhenophaseRow(int(r[0]), r[1], r[2], r[3], r[4], tuple(groups or ())))
        return result

    async def photos(self) -> AsyncIterator[list[PhotoRow]]:
        p = self._ph
        last = ""
        while True:
            rows = await self._rows(
                "SELECT ph.id, ph.observation_id, ph.user_id, ph.license FROM photos ph "
                "JOIN observations o ON o.id = ph.observation_id "
                f"WHERE ph.upload_state = 'ready' AND ph.is_deleted = false AND {PUBLISHED} "
                f"AND ph.id > {p(1)} ORDER BY ph.id LIMIT {int(self.page_rows)}",
                [last],
            )
            if not rows:
                return
            yield [PhotoRow(r[0], r[1], int(r[2]), r[3]) for r in rows]
            last = rows[-1][0]

    async def still_published(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        rows = await self._rows(
            f"SELECT o.id FROM observations o WHERE o.id IN ({self._in(len(ids))}) "
            f"AND {PUBLISHED}",
            list(ids),
        )
        return {r[0] for r in rows}

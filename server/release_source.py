"""The database side of a release: ``exports.source.ReleaseSource`` over the
database.

Observations are read once, in storage order (a plain table scan, the
cheapest read there is), straight into Arrow record batches by ADBC
(``exports.arrow_reader``); the exporter sorts them per year in bounded
memory.  On SQLite the ADBC read runs in a child process, read-only: ADBC's
own copy of SQLite, opened in the server's process, would drop the server's
POSIX locks on the database file when it closed it.  The small tables
(taxa, phenophases, photos) are read with the server's connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from exports.source import PhenophaseRow, PhotoRow, TaxonRow
from server.database import Database

PAGE_ROWS = 20_000
PUBLISHED = "o.is_deleted = false AND o.review_status <> 'rejected'"


class DatabaseReleaseSource:
    def __init__(self, connection: BaseDBAsyncClient, dialect: str, url: str,
                 page_rows: int = PAGE_ROWS) -> None:
        self.conn = connection
        self.sqlite = dialect == "sqlite"
        self.url = url
        self.sqlite_path = url[len("sqlite://"):] if self.sqlite else ""
        self.page_rows = page_rows

    @classmethod
    def of(cls, database: Database) -> DatabaseReleaseSource:
        return cls(database.connection(), database.dialect, database.url)

    def _ph(self, index: int) -> str:
        return "?" if self.sqlite else f"${index}"

    def _in(self, count: int, start: int = 1) -> str:
        return ", ".join(self._ph(start + i) for i in range(count))

    async def _rows(self, sql: str, values: Sequence[Any] = ()) -> list[Any]:
        _, rows = await self.conn.execute_query(sql, list(values))
        return list(rows)

    async def count(self) -> int:
        rows = await self._rows(f"SELECT count(*) FROM observations o WHERE {PUBLISHED}")
        return int(rows[0][0])

    async def observations(self) -> AsyncGenerator[Any, None]:
        """Every published observation in storage order, as Arrow record
        batches read by ADBC (``exports.arrow_reader``): SQLite in a child
        process, PostgreSQL in one ``COPY`` (one snapshot)."""
        from exports import arrow_reader

        # Notes only of the projects that publish them: their ids are few, and
        # a join per row would cost a fifth of the read.
        noting = [int(r[0]) for r in await self._rows(
            "SELECT id FROM projects WHERE publish_notes = true ORDER BY id"
        )]
        sql = self._observations_sql(noting)
        if self.sqlite:
            batches = arrow_reader.sqlite_batches(self.sqlite_path, sql)
        else:
            batches = arrow_reader.postgres_batches(self.url, sql)
        step: asyncio.Future[Any] | None = None
        try:
            while True:
                step = asyncio.ensure_future(asyncio.to_thread(next, batches, None))
                batch = await asyncio.shield(step)  # a cancelled read runs on
                step = None
                if batch is None:
                    break
                yield batch
        finally:
            # A generator cannot be closed while its thread runs it ("generator
            # already executing"): the read under way ends first.
            if step is not None:
                with contextlib.suppress(Exception):
                    await step
            await asyncio.to_thread(batches.close)

    def _observations_sql(self, noting: list[int]) -> str:
        """No column is ever NULL (the SQLite driver types a column by its first
        rows): empty text stands for none, and the exporter reads it so."""
        notes = (f"CASE WHEN o.project_id IN ({', '.join(map(str, noting))}) "
                 "THEN o.notes ELSE '' END" if noting else "''")
        if self.sqlite:
            flags = ("(SELECT group_concat(code, '|') FROM (SELECT q.code FROM quality_flags q "
                     "WHERE q.observation_id = o.id ORDER BY q.code))")
            uncertainty = "o.coordinate_uncertainty_m"
        else:
            flags = ("(SELECT string_agg(q.code, '|' ORDER BY q.code) FROM quality_flags q "
                     "WHERE q.observation_id = o.id)")
            uncertainty = "o.coordinate_uncertainty_m::float8"
        return f"""
            SELECT o.id, o.user_id, o.project_id,
                COALESCE(o.verified_taxon_id, o.taxon_id) AS taxon_id,
                COALESCE(o.verified_phenophase_id, o.phenophase_id) AS phenophase_id,
                o.status, COALESCE(o.intensity, '') AS intensity, o.observed_at,
                o.observed_utc_offset_min AS offset_min, o.latitude, o.longitude,
                COALESCE({uncertainty}, -1.0) AS uncertainty_m,
                {uncertainty} IS NULL AS uncertainty_null,
                o.geoprivacy, {notes} AS notes, o.license, o.review_status,
                o.server_updated_at AS modified,
                CASE WHEN o.flag_count > 0 THEN COALESCE({flags}, '') ELSE '' END AS flags
            FROM observations o WHERE {PUBLISHED}
        """

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

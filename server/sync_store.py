"""The sync interface (``sync.store``) on the ORM.

Every method runs on the connection of the caller's transaction.  Queries
go through the ``(user_id, updated_seq)`` and ``updated_seq`` indexes, so a
pull page costs the same with 10k or 1M stored observations.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any, cast

from tortoise.backends.base.client import BaseDBAsyncClient

from schemas.observation import UploadState
from server.models.observations import Observation, Photo
from server.models.rows import as_datetime, insert_many, placeholder, select_in, update_many
from server.models.sequence import COUNTER_ID, next_seq
from server.photos import photo_record
from server.quality.runner import References, evaluate, settle, subject
from sync.records import format_observed_at
from sync.store import (
    Change,
    Counters,
    PhenophaseRef,
    ProjectRef,
    ReferenceData,
    StoredRecord,
    Wanted,
    Write,
)

HORIZON_ID = 2  # a second row of the counter table: the tombstone purge horizon
# The synced tables (schemas.sync.TABLES) and their database tables.
SYNCED_TABLES = {"observations": "observations", "photos": "photos", "projects": "projects",
                 "taxa": "taxa", "phenophases": "phenophases"}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _iso_stored(value: Any) -> str | None:
    """A stored timestamp in ISO 8601: SQLite holds ``isoformat(" ")`` text."""
    if isinstance(value, str):
        return value.replace(" ", "T", 1)
    return _iso(value)


def _ms(value: datetime | None) -> int | None:
    return int(value.timestamp() * 1000) if value is not None else None


def observation_wire(r: Mapping[str, Any], flags: list[str] | None) -> dict[str, Any]:
    """An observation as pulls send it, from a plain ``observations`` row."""
    return {
        "id": r["id"],
        "project_id": str(r["project_id"]),
        "taxon_id": str(r["taxon_id"]),
        "phenophase_id": str(r["phenophase_id"]),
        "status": str(r["status"]),
        "intensity": r["intensity"],
        "observed_at": format_observed_at(
            _dt(r["observed_at"]), r["observed_utc_offset_min"]  # type: ignore[arg-type]
        ),
        "latitude": r["latitude"],
        "longitude": r["longitude"],
        "coordinate_uncertainty_m": r["coordinate_uncertainty_m"],
        "geoprivacy": str(r["geoprivacy"]),
        "notes": r["notes"],
        "license": r["license"],
        "created_at": _ms(_dt(r["client_created_at"])),
        "updated_at": _ms(_dt(r["client_updated_at"])),
        "review_status": str(r["review_status"]),
        "quality_flags": _flags_json(flags),
        "verified_taxon_id": _str_or_none(r["verified_taxon_id"]),
        "verified_phenophase_id": _str_or_none(r["verified_phenophase_id"]),
        "server_created_at": _iso_stored(r["server_created_at"]),
        "server_updated_at": _iso_stored(r["server_updated_at"]),
    }


# What a pull reads of an observation, in the order ``pull_records`` unpacks
# it; last, the codes of its quality flags as a JSON array (or NULL), read in
# the same statement.
PULL_COLUMNS = (
    "id, CAST(project_id AS TEXT), CAST(taxon_id AS TEXT), CAST(phenophase_id AS TEXT), "
    "status, intensity, observed_at, observed_utc_offset_min, latitude, longitude, "
    "coordinate_uncertainty_m, geoprivacy, notes, license, client_created_at, "
    "client_updated_at, review_status, CAST(verified_taxon_id AS TEXT), "
    "CAST(verified_phenophase_id AS TEXT), server_created_at, server_updated_at, "
    "updated_seq, created_seq, is_deleted, client_changed_device, "
    "(SELECT {agg}(code) FROM quality_flags WHERE observation_id = observations.id)"
)
FLAG_AGGREGATE = {"sqlite": "json_group_array", "postgres": "json_agg"}
_ZONES: dict[int, timezone] = {}


def _zone(offset_min: int) -> timezone:
    zone = _ZONES.get(offset_min)
    if zone is None:
        zone = _ZONES[offset_min] = timezone(timedelta(minutes=offset_min))
    return zone


def pull_records(rows: Iterable[Sequence[Any]]) -> list[Change]:
    """``observation_wire`` for a page of ``PULL_COLUMNS`` rows, inlined: the
    same values (tests/server/test_sync_store.py holds it to that), at a
    fraction of the cost per row.  SQLite returns timestamps as the text its
    adapter stored (``isoformat(" ")``), PostgreSQL as datetimes.  The rows
    of one push share their server timestamps: one equal to the last row's
    (and, a datetime, with the same UTC offset) is not formatted again."""
    parse = datetime.fromisoformat
    new = tuple.__new__  # Change(...) without NamedTuple's Python-level __new__
    out: list[Change] = []
    server_created_in: Any = None
    server_updated_in: Any = None
    server_created_at = server_updated_at = None
    for (id_, project, taxon, phenophase, status, intensity, observed, offset, latitude,
         longitude, uncertainty, geoprivacy, notes, license_, created, updated, review,
         verified_taxon, verified_phenophase, server_created, server_updated, seq,
         created_seq, deleted, device, flags) in rows:
        if type(observed) is str:
            observed = parse(observed)
        if observed.tzinfo is None:
            observed = observed.replace(tzinfo=UTC)
        created_ms = _stored_ms(created)
        if server_created != server_created_in or (
                type(server_created) is datetime
                and server_created.utcoffset() != server_created_in.utcoffset()):
            server_created_in = server_created
            server_created_at = _iso_stored(server_created)
        if server_updated != server_updated_in or (
                type(server_updated) is datetime
                and server_updated.utcoffset() != server_updated_in.utcoffset()):
            server_updated_in = server_updated
            server_updated_at = _iso_stored(server_updated)
        out.append(new(Change, (int(seq), int(created_seq), bool(deleted), device, {
            "id": id_,
            "project_id": project,
            "taxon_id": taxon,
            "phenophase_id": phenophase,
            "status": status,
            "intensity": intensity,
            "observed_at": observed.astimezone(_ZONES.get(offset) or _zone(offset)).isoformat(),
            "latitude": latitude,
            "longitude": longitude,
            "coordinate_uncertainty_m": uncertainty,
            "geoprivacy": geoprivacy,
            "notes": notes,
            "license": license_,
            "created_at": created_ms,
            "updated_at": created_ms if updated == created else _stored_ms(updated),
            "review_status": review,
            # SQLite's empty array is "[]", PostgreSQL's NULL; a deleted
            # record's flags are not sent.
            "quality_flags": ("[]" if flags is None or flags == "[]" or deleted
                              else json.dumps(sorted(json.loads(flags)))),
            "verified_taxon_id": verified_taxon,
            "verified_phenophase_id": verified_phenophase,
            "server_created_at": server_created_at,
            "server_updated_at": server_updated_at,
        })))
    return out


def _stored_ms(value: Any) -> int | None:
    """``_ms(_dt(value))`` of a stored timestamp."""
    if value is None:
        return None
    if type(value) is str:
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def photo_wire(p: Photo) -> dict[str, Any]:
    record = photo_record(p)
    return {
        "id": p.id,
        "observation_id": p.observation_id,  # type: ignore[attr-defined]
        "sha256": p.declared_sha256,
        "license": p.license,
        "created_at": None,
        "updated_at": None,
        "upload_state": record["upload_state"],
        "failure_code": record["failure_code"],
        "width": record["width"],
        "height": record["height"],
        "derivatives": json.dumps(record["derivatives"]),
        "original_url": record["original_url"],
        "exif": json.dumps(record["exif"]) if record["exif"] is not None else None,
        "exif_taken_at": _iso(p.exif_taken_at),
        "exif_latitude": p.exif_latitude,
        "exif_longitude": p.exif_longitude,
        "server_created_at": _iso(p.server_created_at),
        "server_updated_at": _iso(p.server_updated_at),
    }


def _flags_json(codes: list[str] | None) -> str:
    return json.dumps(sorted(codes)) if codes else "[]"


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _observation_values(r: Mapping[str, Any]) -> dict[str, Any]:
    """The canonical client-owned values of a plain row (see ``sync.records``)."""
    return {
        "project_id": r["project_id"],
        "taxon_id": r["taxon_id"],
        "phenophase_id": r["phenophase_id"],
        "status": str(r["status"]),
        "intensity": r["intensity"],
        "observed_at": _dt(r["observed_at"]),
        "observed_utc_offset_min": r["observed_utc_offset_min"],
        "latitude": r["latitude"],
        "longitude": r["longitude"],
        "coordinate_uncertainty_m": r["coordinate_uncertainty_m"],
        "geoprivacy": str(r["geoprivacy"]),
        "notes": r["notes"],
        "license": r["license"],
        "client_created_at": _dt(r["client_created_at"]),
        "client_updated_at": _dt(r["client_updated_at"]),
    }


def _photo_values(p: Photo) -> dict[str, Any]:
    return {
        "observation_id": p.observation_id,  # type: ignore[attr-defined]
        "declared_sha256": p.declared_sha256,
        "license": p.license,
        "client_created_at": None,
        "client_updated_at": None,
    }


async def flag_codes(ids: list[str], conn: BaseDBAsyncClient) -> dict[str, list[str]]:
    codes: dict[str, list[str]] = {}
    for r in await select_in(conn, "observation_id, code", "quality_flags", "observation_id",
                             ids):
        codes.setdefault(r["observation_id"], []).append(r["code"])
    return codes


class OrmSyncStore:
    def __init__(self, conn: BaseDBAsyncClient) -> None:
        self.conn = conn
        # What this push has read: the reference data as models, and the
        # stored observation rows (the writes keep their server-owned values).
        self._refs: References | None = None
        self._rows: dict[str, dict[str, Any]] = {}

    # --- push -------------------------------------------------------------
    async def reference(self, user_id: int, wanted: Wanted) -> ReferenceData:
        """The projects, taxa and phenophases the batch names (and not deleted),
        the species lists of those projects and the user's memberships in them:
        five small queries on plain rows, whatever the size of the vocabulary."""
        conn = self.conn
        refs = await References.load(conn, wanted.projects, wanted.taxa, wanted.phenophases,
                                     live=True)
        self._refs = refs
        species: dict[int, set[int]] = {}
        members: list[int] = []
        if refs.projects:
            ids = sorted(refs.projects)
            for r in await select_in(conn, "project_id, taxon_id", "project_taxa",
                                     "project_id", ids):
                species.setdefault(int(r["project_id"]), set()).add(int(r["taxon_id"]))
            members = [int(r["project_id"]) for r in await select_in(
                conn, "project_id", "memberships", "project_id", ids,
                f"user_id = {placeholder(conn, len(ids) + 1)}", extra=[user_id])]
        return ReferenceData(
            {p.id: ProjectRef(p.id, p.is_open, frozenset(species.get(p.id, ())))
             for p in refs.projects.values()},
            {t.id: t.group for t in refs.taxa.values()},
            {p.id: PhenophaseRef(p.id, frozenset(p.groups or []), frozenset(p.intensity_codes()))
             for p in refs.phenophases.values()},
            frozenset(members),
        )

    async def load(self, table: str, ids: list[str]) -> dict[str, StoredRecord]:
        if not ids:
            return {}
        conn = self.conn
        if table == "observations":
            rows = await select_in(conn, "*", "observations", "id", ids)
            self._rows.update((r["id"], r) for r in rows)
            flags = await flag_codes([r["id"] for r in rows], conn)
            return {
                r["id"]: StoredRecord(
                    r["id"], r["user_id"], _observation_values(r),
                    int(r["client_changed_seq"]), r["client_changed_device"],
                    bool(r["is_deleted"]), observation_wire(r, flags.get(r["id"])),
                    (int(r["client_changed_pulled_at"] or 0),
                     int(r["client_changed_push"] or 0)),
                )
                for r in rows
            }
        photos = await Photo.filter(id__in=ids).using_db(conn)
        return {
            p.id: StoredRecord(
                p.id, p.user_id, _photo_values(p),  # type: ignore[attr-defined]
                p.updated_seq, None, p.is_deleted, photo_wire(p),
            )
            for p in photos
        }

    async def reserve_seqs(self, count: int) -> int:
        return await next_seq(self.conn, count) - count + 1

    async def save_many(
        self, table: str, user_id: int, device: str | None, writes: list[Write],
        *, stamp: tuple[int, int] = (0, 0),
    ) -> None:
        if table == "observations":
            await self._save_observations(user_id, device, writes, stamp)
            return
        now = datetime.now(UTC)
        await insert_many(self.conn, Photo, [
            {"id": w.id, "observation_id": w.values["observation_id"],
             "declared_sha256": w.values["declared_sha256"], "license": w.values["license"],
             "user_id": user_id, "created_seq": w.seq, "updated_seq": w.seq,
             "is_deleted": False, "deleted_at": None, "server_created_at": now,
             "server_updated_at": now, "upload_state": "pending",
             "client_changed_device": device}
            for w in writes if w.created
        ])
        await update_many(self.conn, Photo, "id", [
            {"observation_id": w.values["observation_id"],
             "declared_sha256": w.values["declared_sha256"], "license": w.values["license"],
             "updated_seq": w.seq, "client_changed_device": device, "server_updated_at": now,
             "id": w.id}
            for w in writes if not w.created
        ])

    async def _save_observations(self, user_id: int, device: str | None,
                                 writes: list[Write], stamp: tuple[int, int]) -> None:
        """Check the batch, then write each row once with its review status and
        flag count: one INSERT for the new records, one UPDATE for the others,
        then the flags, queue rows and audit events (``server.quality``).
        The checks' server-owned changes take the number of this write, and
        never make a conflict (``client_changed_seq`` is the client's)."""
        conn = self.conn
        now = datetime.now(UTC)
        # ``reference`` loaded every project, taxon and phenophase the batch
        # names; the writes passed its checks, so they name no other.
        assert self._refs is not None
        missing = [w.id for w in writes if not w.created and w.id not in self._rows]
        if missing:
            await self.load("observations", missing)
        rows = []
        for w in writes:
            old = None if w.created else self._rows[w.id]
            rows.append({
                **w.values, "id": w.id, "user_id": user_id,
                "review_status": "pending" if old is None else str(old["review_status"]),
                "flag_count": 0 if old is None else int(old["flag_count"]),
                "server_created_at": now if old is None else old["server_created_at"],
            })
        batch = await evaluate(
            [subject(r, self._refs) for r in rows], conn, now=now, edited=True,
            created_seqs={w.id: w.seq if w.created else int(self._rows[w.id]["created_seq"])
                          for w in writes},
            new=frozenset(w.id for w in writes if w.created),
        )
        result = {o.subject.id: o for o in batch.outcomes}
        inserts, updates = [], []
        for w, row in zip(writes, rows, strict=True):
            o = result[w.id]
            server = {"review_status": o.after, "flag_count": len(o.codes),
                      "updated_seq": w.seq, "client_changed_seq": w.seq,
                      "client_changed_device": device, "server_updated_at": now,
                      "client_changed_pulled_at": stamp[0], "client_changed_push": stamp[1]}
            if w.created:
                # The row the checks saw (its values, id, user, creation time),
                # completed in place: no second copy of 500 rows.
                row.update(server, created_seq=w.seq, is_deleted=False, deleted_at=None,
                           client_revision=1, verified_taxon_id=None,
                           verified_phenophase_id=None)
                inserts.append(row)
            else:
                updates.append({**w.values, **server, "id": w.id})
        await insert_many(conn, Observation, inserts)
        await update_many(conn, Observation, "id", updates,
                          extra='"client_revision" = "client_revision" + 1')
        await settle(batch, conn)

    async def delete_many(self, table: str, record_ids: list[str], *, first_seq: int) -> None:
        model = Observation if table == "observations" else Photo
        now = datetime.now(UTC)
        await update_many(self.conn, model, "id", [
            {"is_deleted": True, "deleted_at": now, "updated_seq": first_seq + i, "id": rid}
            for i, rid in enumerate(record_ids)
        ])

    # --- pull -------------------------------------------------------------
    async def _observation_changes(
        self, user_id: int, after: int, limit: int, columns: tuple[str, ...]
    ) -> list[Change]:
        """The hot path of every pull: rows as the driver's tuples (no dict per
        row, no model instances), each made into its wire record once."""
        m = self._mark
        columns_sql = PULL_COLUMNS.format(agg=FLAG_AGGREGATE[self.conn.capabilities.dialect])
        _, rows = await self.conn.execute_query(
            f"SELECT {columns_sql} FROM observations WHERE user_id = {m(1)} "
            f"AND updated_seq > {m(2)} ORDER BY updated_seq LIMIT {m(3)}",
            [user_id, after, limit],
        )
        # sqlite3.Row or asyncpg Record (Tortoise's annotation says dict): tuples.
        out = pull_records(cast("list[Sequence[Any]]", rows))
        keep = {"id", *columns}
        if out and not keep >= out[0].record.keys():
            # An older schema version: the columns it knows only.
            out = [c._replace(record={k: v for k, v in c.record.items() if k in keep})
                   for c in out]
        return out

    def _mark(self, position: int) -> str:
        return f"${position}" if self.conn.capabilities.dialect == "postgres" else "?"

    async def counters(self, tables: tuple[str, ...]) -> Counters:
        """The counter, the horizon and each table's newest ``updated_seq`` (an
        index's last entry): one round trip, and a pull queries only the
        tables that changed after its cursor."""
        newest = ", ".join(f"(SELECT max(updated_seq) FROM {SYNCED_TABLES[t]})" for t in tables)
        _, rows = await self.conn.execute_query(
            f"SELECT (SELECT value FROM sync_counter WHERE id = {COUNTER_ID}), "
            f"(SELECT value FROM sync_counter WHERE id = {HORIZON_ID}), {newest}")
        seq, horizon, *latest = rows[0]
        return Counters(int(seq or 0), int(horizon or 0),
                        {t: int(n or 0) for t, n in zip(tables, latest, strict=True)})

    async def changes(
        self, table: str, user_id: int, after: int, limit: int, columns: tuple[str, ...]
    ) -> list[Change]:
        """Plain rows (no model instances) in every table: a page is hot."""
        if table == "observations":
            return await self._observation_changes(user_id, after, limit, columns)
        m = self._mark  # SQLite binds "?" in the order they appear
        order = f"updated_seq > {m(2)} ORDER BY updated_seq LIMIT {m(3)}"
        if table == "photos":
            rows = await self.conn.execute_query_dict(
                f"SELECT * FROM photos WHERE user_id = {m(1)} AND {order}",
                [user_id, after, limit])
            wire = [(r, photo_wire(_photo_row(r))) for r in rows]
        elif table == "projects":
            # Visibility is filtered in SQL, before the limit: a page must not
            # end early on rows this user cannot see.
            rows = await self.conn.execute_query_dict(
                f"SELECT * FROM projects WHERE (id IN (SELECT project_id FROM memberships "
                f"WHERE user_id = {m(1)}) OR is_open = {m(2)}) AND updated_seq > {m(3)} "
                f"ORDER BY updated_seq LIMIT {m(4)}",
                [user_id, True, after, limit])
            wire = [(r, _project_wire(r)) for r in rows]
        elif table == "taxa":
            rows = await self.conn.execute_query_dict(
                f"SELECT * FROM taxa WHERE {_reference_page(m)}", [after, limit])
            wire = [(r, _taxon_wire(r)) for r in rows]
        else:
            rows = await self.conn.execute_query_dict(
                f"SELECT * FROM phenophases WHERE {_reference_page(m)}", [after, limit])
            wire = [(r, _phenophase_wire(r)) for r in rows]
        keep = ("id", *columns)
        return [
            Change(int(row["updated_seq"]), int(row["created_seq"]), bool(row["is_deleted"]),
                   row.get("client_changed_device"),
                   {k: v for k, v in record.items() if k in keep})
            for row, record in wire
        ]


_dt = as_datetime


def _reference_page(mark: Any) -> str:
    return f"updated_seq > {mark(1)} ORDER BY updated_seq LIMIT {mark(2)}"


def _json(value: Any) -> Any:
    """A JSON column as the driver returns it (text on both backends here)."""
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def _photo_row(r: Mapping[str, Any]) -> Any:
    """A ``photos`` row with the attributes ``photo_wire`` reads."""
    return SimpleNamespace(**{
        **r, "upload_state": UploadState(r["upload_state"]), "exif": _json(r["exif"]),
        "derivative_sizes": _json(r["derivative_sizes"]),
        "exif_taken_at": _dt(r["exif_taken_at"]), "server_created_at": _dt(r["server_created_at"]),
        "server_updated_at": _dt(r["server_updated_at"]),
    })


def _project_wire(p: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(p["id"]), "slug": p["slug"], "name": p["name"],
        "description": p["description"], "license": p["license"],
        "min_latitude": p["min_latitude"], "min_longitude": p["min_longitude"],
        "max_latitude": p["max_latitude"], "max_longitude": p["max_longitude"],
        "agreements_required": p["agreements_required"], "auto_accept": bool(p["auto_accept"]),
        "max_uncertainty_m": p["max_uncertainty_m"], "is_open": bool(p["is_open"]),
    }


def _taxon_wire(t: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(t["id"]), "scientific_name": t["scientific_name"], "rank": t["rank"],
        "vernacular_nl": t["vernacular_nl"], "vernacular_en": t["vernacular_en"],
        "taxon_group": t["group"], "sensitive": bool(t["sensitive"]),
    }


def _phenophase_wire(p: Mapping[str, Any]) -> dict[str, Any]:
    intensity = _json(p["intensity"])
    return {
        "id": str(p["id"]), "code": p["code"], "name": p["name"],
        "definition": p["definition"], "ppo_iri": p["ppo_iri"],
        "groups": json.dumps(_json(p["groups"]) or []),
        "intensity": json.dumps(intensity) if intensity else None,
    }

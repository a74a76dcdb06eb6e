"""Pull: a page of changes since a cursor, as a consistent prefix.

The cursor is a server sequence number (``sync.store`` / server sequence),
never a clock.  Pages are ordered by sequence across all tables, so a client
may store ``timestamp`` after every page: it never skips a row.  The caller
runs this inside one read transaction with a single snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas import errors
from schemas.sync import (
    MAX_PAGE_SIZE,
    OLDEST_SUPPORTED_SCHEMA_VERSION,
    SCHEMA_VERSION,
    TABLES,
    columns_for,
    tables_for,
)
from sync.store import Change, PullStore


@dataclass(frozen=True)
class Migration:
    """WatermelonDB's ``migration`` argument: what the client just added."""

    from_version: int
    tables: tuple[str, ...]
    columns: dict[str, tuple[str, ...]]


def check_schema_version(version: int) -> None:
    if version < OLDEST_SUPPORTED_SCHEMA_VERSION:
        raise errors.UpgradeRequired(
            f"Schema version {version} is no longer supported (oldest: "
            f"{OLDEST_SUPPORTED_SCHEMA_VERSION}): update the app.",
            details={"oldest_supported": OLDEST_SUPPORTED_SCHEMA_VERSION,
                     "current": SCHEMA_VERSION},
        )
    if version > SCHEMA_VERSION:
        raise errors.InvalidParameter(
            f"Schema version {version} is newer than this server knows ({SCHEMA_VERSION}).",
            details={"current": SCHEMA_VERSION},
        )


def parse_migration(raw: Any) -> Migration | None:
    """Accept ``{"from": n, "tables": [...], "columns": [{"table", "columns"}]}`` or null."""
    if raw is None:
        return None
    try:
        tables = tuple(str(t) for t in raw.get("tables", []))
        columns = {str(c["table"]): tuple(str(x) for x in c["columns"])
                   for c in raw.get("columns", [])}
        migration = Migration(int(raw["from"]), tables, columns)
    except (AttributeError, KeyError, TypeError, ValueError):
        raise errors.InvalidParameter(
            "migration must be JSON like {\"from\": 1, \"tables\": [], \"columns\": []}."
        ) from None
    unknown = [t for t in (*tables, *columns) if t not in TABLES]
    if unknown:
        raise errors.InvalidParameter(f"migration names unknown tables: {', '.join(unknown)}.")
    return migration


async def pull(
    store: PullStore,
    *,
    user_id: int,
    last_pulled_at: int | None,
    schema_version: int,
    limit: int,
    migration: Migration | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """A page of changes.  ``device`` (the X-Device-Id of the pull) lets the
    server send the device's own pushes back as ``updated``: it holds them
    already, and WatermelonDB recreates a record that comes back as
    ``created`` after the device deleted it locally (losing the delete)."""
    check_schema_version(schema_version)
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    tables = tables_for(schema_version)
    counters = await store.counters(tables)
    full_resync = last_pulled_at is not None and last_pulled_at < counters.horizon
    first = last_pulled_at is None or full_resync
    after = 0 if first else int(last_pulled_at or 0)
    snapshot = counters.seq

    rows: list[tuple[str, Change]] = []
    for table in tables:
        if counters.newest[table] <= after:
            continue  # no row of it changed after the cursor: no query
        rows.extend((table, change) for change in await store.changes(
            table, user_id, after, limit + 1, columns_for(table, schema_version)))
    rows.sort(key=lambda tc: tc[1].seq)
    has_more = len(rows) > limit
    page = rows[:limit]
    if has_more:
        # Never cut between rows of one sequence number: the next page starts
        # after the cursor, and would skip the rest of them.
        last = page[-1][1].seq
        if rows[limit][1].seq == last:
            whole = [tc for tc in page if tc[1].seq != last]
            page = whole or [tc for tc in rows if tc[1].seq == last]
        timestamp = page[-1][1].seq
    else:
        timestamp = max(snapshot, after)

    changes: dict[str, dict[str, list[Any]]] = {
        t: {"created": [], "updated": [], "deleted": []} for t in tables
    }
    for table, change in page:
        bucket = changes[table]
        if change.deleted:
            # Even when created after the cursor: the device may hold it because
            # it pushed it itself.  A device ignores deletes of ids it never had.
            if not first:
                bucket["deleted"].append(change.record["id"])
            continue
        echo = device is not None and change.device == device
        kind = ("created" if first or (change.created_seq > after and not echo)
                else "updated")
        # The store built the record in its wire shape: sent as it is.
        bucket[kind].append(change.record)

    if migration is not None and not first:
        await _backfill(store, changes, user_id, migration, schema_version, page)

    body: dict[str, Any] = {"changes": changes, "timestamp": timestamp, "has_more": has_more}
    if full_resync:
        body["full_resync"] = True
    return body


async def _backfill(store: PullStore, changes: dict[str, dict[str, list[Any]]], user_id: int,
                    migration: Migration, schema_version: int,
                    page: list[tuple[str, Change]]) -> None:
    """Send every row of tables and columns the client just added (WatermelonDB migration)."""
    already = {(t, c.record["id"]) for t, c in page}
    for table in (*migration.tables, *migration.columns):
        if table not in changes:
            continue
        kind = "created" if table in migration.tables else "updated"
        for change in await store.changes(table, user_id, 0, 10**9,
                                          columns_for(table, schema_version)):
            if change.deleted or (table, change.record["id"]) in already:
                continue
            changes[table][kind].append(change.record)

"""A reference sync client: what a device does, in Python (issue #3, part 5).

The device keeps a local SQLite database of every record it knows, with
WatermelonDB's local state per record:

- ``_status``: ``synced``, ``created``, ``updated`` or ``deleted`` (a local
  delete waiting to be pushed);
- ``_changed``: the columns changed locally since the last sync.

The rows whose ``_status`` is not ``synced`` are the **outbox**: nothing is
ever queued twice, and a record edited five times offline is pushed once.
The stored cursor is the server's sequence number of the last pulled page.

Contract of :meth:`SyncClient.sync` (pull, then push):

1. Pull every page; after each page the changes and the page's ``timestamp``
   are stored in one local transaction, so a sync cut short resumes where it
   stopped.  A pulled record replaces a synced local one; for a record with
   local changes the server's values are taken for every column *not* in
   ``_changed`` (WatermelonDB's per-column merge).  A pulled delete removes
   the local record, local changes included (the server's tombstone wins).
   ``full_resync`` drops every synced local record first (local changes stay).
2. Push the outbox in batches (default 500), observations before photos,
   with ``last_pulled_at`` and ``push_count`` (a stored counter, taken anew
   for each batch and the same on its retries, so a late copy of an older
   push can never overwrite a newer one).  A record becomes ``synced`` only
   when the server says ``applied`` or ``unchanged`` *and* it was not edited
   locally while the push was in flight.  A ``conflict`` (or ``superseded``)
   merges the ``server_record`` into the local record (the same per-column
   merge) and leaves it in the outbox for the next sync.  ``deleted``
   (another device deleted it) drops the local record.  Any other rejection
   is kept with its code (:meth:`rejections`) and the record is not pushed
   again until it is edited.

Every request is safe to repeat (the server makes a replay change nothing),
so network errors, 5xx and 429 are retried with exponential backoff and full
jitter, a bounded number of times, then :class:`RetriesExhausted` is raised;
the local state stays consistent and the next ``sync()`` carries on.

SQLite runs on one worker thread owned by the client, never on the event
loop.  Only the standard library and httpx are used, so the module can be
copied into any Python device or test tool; it never imports the server.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from schemas.sync import PUSHABLE_TABLES, SCHEMA_VERSION, TABLES, client_owned

__all__ = [
    "PullReport",
    "PushReport",
    "Rejected",
    "RetriesExhausted",
    "RetryPolicy",
    "SyncClient",
    "SyncError",
    "SyncHTTPError",
    "SyncReport",
]

SYNCED = "synced"
CREATED = "created"
UPDATED = "updated"
DELETED = "deleted"

PULL_PATH = "/api/v1/sync/pull"
PUSH_PATH = "/api/v1/sync/push"

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    tbl TEXT NOT NULL,
    id TEXT NOT NULL,
    data TEXT NOT NULL,             -- the record's columns, as JSON
    _status TEXT NOT NULL,          -- synced | created | updated | deleted
    _changed TEXT NOT NULL DEFAULT '',  -- comma-separated columns changed locally
    _rev INTEGER NOT NULL DEFAULT 0,    -- bumped by every local change
    PRIMARY KEY (tbl, id)
);
CREATE INDEX IF NOT EXISTS records_outbox ON records (_status) WHERE _status != 'synced';
CREATE TABLE IF NOT EXISTS rejections (
    tbl TEXT NOT NULL,
    id TEXT NOT NULL,
    rev INTEGER NOT NULL,           -- the local revision the server rejected
    code TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (tbl, id)
);
-- The server's version as last pulled: what a record is again after the
-- server answers "unchanged" (device clocks aside, the same content).
CREATE TABLE IF NOT EXISTS bases (
    tbl TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (tbl, id)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


# --- errors -------------------------------------------------------------------
class SyncError(Exception):
    """Base of the client's errors.

    SyncError
    ├── SyncHTTPError      the server answered with a 4xx (not 429): retrying will not help
    └── RetriesExhausted   network errors, 5xx or 429 on every attempt
    """


class SyncHTTPError(SyncError):
    def __init__(self, status_code: int, body: Any) -> None:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        self.status_code = status_code
        self.code: str | None = error.get("code")
        self.body = body
        super().__init__(f"HTTP {status_code}: {error.get('message') or body!r}")


class RetriesExhausted(SyncError):
    def __init__(self, attempts: int, last: BaseException | str) -> None:
        self.attempts = attempts
        self.last = last
        super().__init__(f"gave up after {attempts} attempts: {last}")


# --- results ------------------------------------------------------------------
@dataclass(frozen=True)
class Rejected:
    """A record the server rejected, kept locally until it is edited."""

    table: str
    id: str
    code: str
    message: str


@dataclass
class PullReport:
    pages: int = 0
    records: int = 0  # created + updated + deleted received
    full_resync: bool = False


@dataclass
class PushReport:
    batches: int = 0
    pushed: int = 0  # records sent
    applied: int = 0
    unchanged: int = 0
    conflicts: int = 0  # merged with the server's version, pushed again next sync
    superseded: int = 0  # the same, for a push older than one of this device's own
    discarded: int = 0  # rejected as deleted on the server: dropped locally
    rejected: list[Rejected] = field(default_factory=list)


@dataclass
class SyncReport:
    pull: PullReport
    push: PushReport

    @property
    def quiet(self) -> bool:
        """Nothing came in and nothing went out: this device is up to date."""
        return self.pull.records == 0 and self.push.pushed == 0


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter (AWS architecture blog's "full jitter").

    Attempt ``n`` (0-based) waits a uniform random time in
    ``[0, min(max_delay, base_delay * multiplier**n)]`` before the next one.
    """

    attempts: int = 6
    base_delay: float = 0.25
    max_delay: float = 20.0
    multiplier: float = 2.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0, min(self.max_delay, self.base_delay * self.multiplier**attempt))


# --- the client -----------------------------------------------------------------
class SyncClient:
    """One installation of the app: a local database and a sync loop.

    ``database`` is a file path (the device's storage) or ``":memory:"``.
    ``transport`` is any httpx async transport (``httpx.ASGITransport`` on the
    app in tests, a fault-injecting wrapper, or the default network one).
    ``sleep`` and ``rng`` are injectable so tests of the backoff are fast and
    deterministic.  ``send_push_count=False`` leaves out the optional
    ``push_count`` (as a plain WatermelonDB ``pushChanges`` does).  Use as
    ``async with SyncClient(...) as device:``.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        database: str | Path = ":memory:",
        device_id: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        schema_version: int = SCHEMA_VERSION,
        page_size: int = 500,
        batch_size: int = 500,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: random.Random | None = None,
        timeout: float = 30.0,
        send_push_count: bool = True,
    ) -> None:
        self.base_url = base_url
        self.token = token
        self.schema_version = schema_version
        self.page_size = page_size
        self.batch_size = batch_size
        self.retry = retry
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._database = str(database)
        self._requested_device_id = device_id
        self.device_id = ""
        self._transport = transport
        self._timeout = timeout
        self.send_push_count = send_push_count
        self._http: httpx.AsyncClient | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()  # one sync at a time per device

    # --- lifecycle ---------------------------------------------------------
    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-client")
        await self._run(self._open_db)
        stored = await self._run(self._meta_get, "device_id")
        self.device_id = stored or self._requested_device_id or uuid.uuid4().hex
        if stored is None:
            await self._run(self._meta_set, "device_id", self.device_id)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, transport=self._transport, timeout=self._timeout,
            headers={"Authorization": f"Bearer {self.token}", "X-Device-Id": self.device_id},
        )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._executor is not None:
            await self._run(self._close_db)
            self._executor.shutdown(wait=True)
            self._executor = None

    async def __aenter__(self) -> SyncClient:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- local operations --------------------------------------------------
    async def record(self, table: str, values: Mapping[str, Any]) -> str:
        """Create a record offline; return its id (a new UUID unless given)."""
        _check_pushable(table)
        data = dict(values)
        data.setdefault("id", str(uuid.uuid4()))
        now = _now_ms()
        data.setdefault("created_at", now)
        data["updated_at"] = now
        await self._run(self._create, table, data)
        return str(data["id"])

    async def update(self, table: str, record_id: str, values: Mapping[str, Any]) -> None:
        """Change some columns of a record offline (KeyError if it is unknown or deleted)."""
        _check_pushable(table)
        await self._run(self._update, table, record_id, {**values, "updated_at": _now_ms()})

    async def delete(self, table: str, record_id: str) -> None:
        """Delete a record offline; the delete is pushed at the next sync."""
        _check_pushable(table)
        await self._run(self._delete, table, record_id)

    async def get(self, table: str, record_id: str) -> dict[str, Any] | None:
        """The record as the device sees it (None if unknown or deleted locally)."""
        rows = await self._run(self._select, table, record_id)
        return rows[0] if rows else None

    async def records(self, table: str) -> list[dict[str, Any]]:
        """Every live record of ``table`` the device holds, ordered by id."""
        return await self._run(self._select, table, None)

    async def outbox(self) -> list[tuple[str, str, str]]:
        """``(table, id, _status)`` of every record waiting to be pushed."""
        return await self._run(self._outbox_rows)

    async def rejections(self) -> list[Rejected]:
        """Records the server rejected (other than conflicts and deletes), with the codes."""
        return await self._run(self._rejections)

    async def cursor(self) -> int | None:
        value = await self._run(self._meta_get, "cursor")
        return None if value is None else int(value)

    # --- sync --------------------------------------------------------------
    async def sync(self) -> SyncReport:
        """Pull every page, then push the outbox (see the module docstring)."""
        async with self._lock:
            pulled = await self._pull()
            pushed = await self._push()
            return SyncReport(pulled, pushed)

    async def _pull(self) -> PullReport:
        report = PullReport()
        while True:
            params: dict[str, str] = {
                "schema_version": str(self.schema_version), "limit": str(self.page_size),
            }
            cursor = await self.cursor()
            if cursor is not None:
                params["last_pulled_at"] = str(cursor)
            body = await self._request("GET", PULL_PATH, params=params)
            full = bool(body.get("full_resync"))
            report.full_resync |= full
            report.pages += 1
            report.records += await self._run(
                self._apply_page, body["changes"], int(body["timestamp"]), full
            )
            if not body.get("has_more"):
                return report

    async def _push(self) -> PushReport:
        report = PushReport()
        pending = await self._run(self._pending)
        for start in range(0, len(pending), self.batch_size):
            batch = pending[start:start + self.batch_size]
            changes: dict[str, dict[str, list[Any]]] = {}
            for table, rid, status, data, _rev in batch:
                section = changes.setdefault(table, {"created": [], "updated": [], "deleted": []})
                if status == DELETED:
                    section["deleted"].append(rid)
                else:
                    section[status].append(data)
            cursor = await self.cursor()
            params = {} if cursor is None else {"last_pulled_at": str(cursor)}
            if self.send_push_count:
                # Stored before sending: a number is never reused for other content.
                params["push_count"] = str(await self._run(self._next_push_count))
            body = await self._request("POST", PUSH_PATH, params=params,
                                       json={"changes": changes})
            revs = {(t, rid): rev for t, rid, _s, _d, rev in batch}
            await self._run(self._apply_results, body["results"], revs, report)
            report.batches += 1
            report.pushed += len(batch)
        return report

    async def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        assert self._http is not None, "use `async with SyncClient(...)` or call open()"
        last: BaseException | str = ""
        for attempt in range(self.retry.attempts):
            if attempt:
                await self._sleep(self.retry.delay(attempt - 1, self._rng))
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:  # connect, read, write, timeouts, protocol
                last = exc
                continue
            if response.status_code >= 500 or response.status_code == 429:
                last = f"HTTP {response.status_code}"
                retry_after = response.headers.get("retry-after", "")
                if retry_after.isdigit() and attempt + 1 < self.retry.attempts:
                    await self._sleep(min(float(retry_after), self.retry.max_delay))
                continue
            try:
                body = response.json()
            except ValueError:
                body = response.text
            if response.status_code >= 400:
                raise SyncHTTPError(response.status_code, body)
            if not isinstance(body, dict):
                raise SyncHTTPError(response.status_code, body)
            return body
        raise RetriesExhausted(self.retry.attempts, last)

    # --- the database thread -------------------------------------------------
    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._executor is not None, "use `async with SyncClient(...)` or call open()"
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args))

    def _open_db(self) -> None:
        self._conn = sqlite3.connect(self._database, isolation_level=None)
        self._conn.executescript(_SCHEMA)

    def _close_db(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def _db(self) -> sqlite3.Connection:
        assert self._conn is not None
        return self._conn

    def _meta_get(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _meta_set(self, key: str, value: str | None) -> None:
        if value is None:
            self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self._db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) "
                             "DO UPDATE SET value = excluded.value", (key, value))

    def _next_push_count(self) -> int:
        with _transaction(self._db):
            count = int(self._meta_get("push_count") or 0) + 1
            self._meta_set("push_count", str(count))
        return count

    def _row(self, table: str, rid: str) -> tuple[dict[str, Any], str, set[str], int] | None:
        row = self._db.execute(
            "SELECT data, _status, _changed, _rev FROM records WHERE tbl = ? AND id = ?",
            (table, rid),
        ).fetchone()
        if row is None:
            return None
        return json.loads(row[0]), row[1], _split(row[2]), int(row[3])

    def _write(self, table: str, data: dict[str, Any], status: str, changed: Iterable[str],
               rev: int) -> None:
        self._db.execute(
            "INSERT INTO records (tbl, id, data, _status, _changed, _rev) VALUES (?,?,?,?,?,?) "
            "ON CONFLICT (tbl, id) DO UPDATE SET data = excluded.data, "
            "_status = excluded._status, _changed = excluded._changed, _rev = excluded._rev",
            (table, str(data["id"]), json.dumps(data, sort_keys=True), status,
             ",".join(sorted(changed)), rev),
        )

    def _remove(self, table: str, rid: str) -> None:
        self._db.execute("DELETE FROM records WHERE tbl = ? AND id = ?", (table, rid))
        self._db.execute("DELETE FROM bases WHERE tbl = ? AND id = ?", (table, rid))
        self._db.execute("DELETE FROM rejections WHERE tbl = ? AND id = ?", (table, rid))

    def _create(self, table: str, data: dict[str, Any]) -> None:
        with _transaction(self._db):
            if self._row(table, str(data["id"])) is not None:
                raise ValueError(f"{table} {data['id']} exists already")
            columns = set(data) & set(client_owned(table))
            self._write(table, data, CREATED, columns, 1)

    def _update(self, table: str, rid: str, values: dict[str, Any]) -> None:
        with _transaction(self._db):
            row = self._row(table, rid)
            if row is None or row[1] == DELETED:
                raise KeyError(f"{table} {rid} is not on this device")
            data, status, changed, rev = row
            if all(data.get(k) == v for k, v in values.items() if k != "updated_at"):
                return  # nothing changed: nothing to push
            data.update(values)
            changed |= set(values) & set(client_owned(table))
            self._write(table, data, CREATED if status == CREATED else UPDATED, changed, rev + 1)

    def _delete(self, table: str, rid: str) -> None:
        with _transaction(self._db):
            row = self._row(table, rid)
            if row is None or row[1] == DELETED:
                raise KeyError(f"{table} {rid} is not on this device")
            # Pushed even if never synced: a create whose response was lost may
            # have reached the server.  The server answers "unchanged" otherwise.
            self._write(table, row[0], DELETED, row[2], row[3] + 1)

    def _select(self, table: str, rid: str | None) -> list[dict[str, Any]]:
        sql = "SELECT data FROM records WHERE tbl = ? AND _status != 'deleted'"
        args: tuple[str, ...] = (table,)
        if rid is not None:
            sql += " AND id = ?"
            args += (rid,)
        return [json.loads(r[0]) for r in self._db.execute(sql + " ORDER BY id", args)]

    def _outbox_rows(self) -> list[tuple[str, str, str]]:
        return [(t, i, s) for t, i, s in self._db.execute(
            "SELECT tbl, id, _status FROM records WHERE _status != 'synced' ORDER BY tbl, id")]

    def _rejections(self) -> list[Rejected]:
        return [Rejected(*r) for r in self._db.execute(
            "SELECT tbl, id, code, message FROM rejections ORDER BY tbl, id")]

    def _pending(self) -> list[tuple[str, str, str, dict[str, Any], int]]:
        """The outbox minus records rejected at their current revision."""
        rows = self._db.execute(
            "SELECT r.tbl, r.id, r._status, r.data, r._rev FROM records r "
            "LEFT JOIN rejections j ON j.tbl = r.tbl AND j.id = r.id AND j.rev = r._rev "
            "WHERE r._status != 'synced' AND j.id IS NULL"
        ).fetchall()
        order = {t: n for n, t in enumerate(PUSHABLE_TABLES)}
        rows.sort(key=lambda r: (order.get(r[0], len(order)), r[1]))
        return [(t, i, s, json.loads(d), int(rev)) for t, i, s, d, rev in rows]

    def _apply_page(self, changes: Mapping[str, Mapping[str, list[Any]]], timestamp: int,
                    full_resync: bool) -> int:
        count = 0
        with _transaction(self._db):
            if full_resync:
                self._db.execute("DELETE FROM records WHERE _status = 'synced'")
                self._db.execute("DELETE FROM bases WHERE NOT EXISTS (SELECT 1 FROM records r "
                                 "WHERE r.tbl = bases.tbl AND r.id = bases.id)")
            for table, section in changes.items():
                if table not in TABLES:
                    continue
                for raw in [*section.get("created", []), *section.get("updated", [])]:
                    self._apply_remote(table, raw)
                    count += 1
                for rid in section.get("deleted", []):
                    self._remove(table, str(rid))
                    count += 1
            self._meta_set("cursor", str(timestamp))
        return count

    def _apply_remote(self, table: str, raw: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO bases (tbl, id, data) VALUES (?,?,?) "
            "ON CONFLICT (tbl, id) DO UPDATE SET data = excluded.data",
            (table, str(raw["id"]), json.dumps(raw, sort_keys=True)),
        )
        row = self._row(table, str(raw["id"]))
        if row is None or row[1] == SYNCED:
            self._write(table, dict(raw), SYNCED, (), 0 if row is None else row[3])
            return
        data, status, changed, rev = row
        if status == DELETED:
            return  # the local delete wins; it is pushed next
        # A record created here and known to the server (a lost response) is an update now.
        self._write(table, _merge(raw, data, changed), UPDATED, changed, rev)

    def _apply_results(self, results: Mapping[str, list[dict[str, Any]]],
                       revs: Mapping[tuple[str, str], int], report: PushReport) -> None:
        with _transaction(self._db):
            for table, items in results.items():
                for item in items:
                    rid = str(item["id"])
                    row = self._row(table, rid)
                    if row is None or (table, rid) not in revs:
                        continue
                    data, status, changed, rev = row
                    pushed_rev = revs[(table, rid)]
                    outcome, code = item["status"], item.get("code")
                    if outcome in ("applied", "unchanged"):
                        setattr(report, outcome, getattr(report, outcome) + 1)
                        if rev != pushed_rev:
                            continue  # edited while in flight: push again next time
                        if status == DELETED:
                            self._remove(table, rid)
                            continue
                        if outcome == "unchanged":
                            # The server kept its version, device clocks included: take
                            # it back (an applied change comes back with the next pull).
                            base = self._db.execute(
                                "SELECT data FROM bases WHERE tbl = ? AND id = ?", (table, rid)
                            ).fetchone()
                            if base is not None:
                                data = json.loads(base[0])
                        self._write(table, data, SYNCED, (), rev)
                        self._db.execute("DELETE FROM rejections WHERE tbl = ? AND id = ?",
                                         (table, rid))
                    elif code in ("conflict", "superseded") and item.get("server_record"):
                        if code == "conflict":
                            report.conflicts += 1
                        else:
                            report.superseded += 1
                        if status != DELETED:
                            merged = _merge(item["server_record"], data, changed)
                            self._write(table, merged, UPDATED, changed, rev)
                    elif code == "deleted":
                        report.discarded += 1
                        self._remove(table, rid)
                    else:
                        rejected = Rejected(table, rid, str(code), str(item.get("message", "")))
                        report.rejected.append(rejected)
                        self._db.execute(
                            "INSERT INTO rejections (tbl, id, rev, code, message) "
                            "VALUES (?,?,?,?,?) ON CONFLICT (tbl, id) DO UPDATE SET "
                            "rev = excluded.rev, code = excluded.code, "
                            "message = excluded.message",
                            (table, rid, pushed_rev, rejected.code, rejected.message),
                        )


# --- helpers ----------------------------------------------------------------
class _transaction:
    """BEGIN IMMEDIATE ... COMMIT/ROLLBACK on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")


def _merge(server: Mapping[str, Any], local: Mapping[str, Any],
           changed: set[str]) -> dict[str, Any]:
    """The server's values, except the columns changed on this device."""
    merged = dict(server)
    for column in changed:
        if column in local:
            merged[column] = local[column]
    return merged


def _split(changed: str) -> set[str]:
    return {c for c in changed.split(",") if c}


def _now_ms() -> int:
    return int(time.time() * 1000)


def _check_pushable(table: str) -> None:
    if table not in PUSHABLE_TABLES:
        raise ValueError(f"{table} is not a table a device can change "
                         f"({', '.join(PUSHABLE_TABLES)} are)")

"""The sync endpoints: WatermelonDB-compatible pull and push (docs/sync-protocol.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import orjson
from starlette.responses import JSONResponse, Response
from tortoise.transactions import in_transaction

from schemas import errors
from schemas.sync import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_PUSH_RECORDS, SCHEMA_VERSION
from server.database import read_snapshot
from server.endpoint import INT64, Access, Call, Endpoint, Query
from server.models.sequence import lock_writers
from server.sync_store import OrmSyncStore
from sync.pull import parse_migration, pull
from sync.push import push


class FastJSONResponse(JSONResponse):
    """JSON written by orjson: a page or a push result holds 500 records."""

    def render(self, content: object) -> bytes:
        return orjson.dumps(content)


def _int_param(call: Call, name: str, default: int | None, *, minimum: int = 0,
               maximum: int | None = None) -> int | None:
    raw = call.request.query_params.get(name)
    if raw is None or raw in ("", "null", "undefined"):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise errors.InvalidParameter(f"{name} must be a whole number, not {raw!r}.") from None
    maximum = INT64.stop - 1 if maximum is None else maximum
    if value < minimum or value > maximum:
        raise errors.InvalidParameter(f"{name} must be at least {minimum} and at most {maximum}.")
    return value


async def pull_changes(call: Call) -> Response:
    user = call.require_user()
    last_pulled_at = _int_param(call, "last_pulled_at", None)
    schema_version = _int_param(call, "schema_version", SCHEMA_VERSION)
    limit = _int_param(call, "limit", DEFAULT_PAGE_SIZE, minimum=1, maximum=MAX_PAGE_SIZE)
    raw_migration = call.request.query_params.get("migration")
    migration = None
    if raw_migration not in (None, "", "null"):
        try:
            migration = parse_migration(json.loads(raw_migration or ""))
        except ValueError:
            raise errors.InvalidParameter("migration must be URL-encoded JSON.") from None
    # One snapshot for the whole page, so that the counter and the rows agree.
    async with read_snapshot(call.request.app.state.database.connection()) as conn:
        body = await pull(
            OrmSyncStore(conn), user_id=user.id, last_pulled_at=last_pulled_at,
            schema_version=SCHEMA_VERSION if schema_version is None else schema_version,
            limit=limit or DEFAULT_PAGE_SIZE,
            migration=migration, device=call.request.headers.get("x-device-id") or None,
        )
    return FastJSONResponse(body)


async def push_changes(call: Call) -> Response:
    user = call.require_user()
    last_pulled_at = _int_param(call, "last_pulled_at", None)
    push_count = _int_param(call, "push_count", None)
    changes = call.body["changes"]
    total = sum(len(section.get(k, [])) for section in changes.values()
                for k in ("created", "updated", "deleted"))
    if total > MAX_PUSH_RECORDS:
        raise errors.PayloadTooLarge(
            f"A push may hold at most {MAX_PUSH_RECORDS} records ({total} sent): "
            "push in smaller batches.",
            details={"max_records": MAX_PUSH_RECORDS},
        )
    device = call.body.get("device_id") or call.request.headers.get("x-device-id") or None
    if device is not None and (len(device) > 64 or "\x00" in device):
        raise errors.InvalidParameter("X-Device-Id may be at most 64 characters, without NUL.")
    # JSON carries a NUL character only as the escape \u0000 (orjson refuses
    # raw control characters): without one, no record needs searching for it.
    nul_free = b"\\u0000" not in await call.request.body()
    async with call.request.app.state.push_turn, in_transaction() as conn:
        await lock_writers(conn)
        result = await push(
            OrmSyncStore(conn), user_id=user.id, device=device, last_pulled_at=last_pulled_at,
            changes=changes, now=datetime.now(UTC), push_count=push_count,
            nul_free=nul_free,
        )
    return FastJSONResponse(result.to_dict())


LAST_PULLED_AT = Query(
    "last_pulled_at", {"type": "integer", "minimum": 0},
    "The cursor (timestamp) of the last pull; leave out (or 'null') for a first pull.",
)
ENDPOINTS = [
    Endpoint(
        "GET", "/api/v1/sync/pull", pull_changes,
        "Pull changes since a cursor (WatermelonDB pullChanges)", Access.USER,
        response_schema="sync-pull-response", tags=("sync",),
        description="Query: last_pulled_at (cursor or null), schema_version, limit, migration "
        "(URL-encoded JSON). See docs/sync-protocol.md.",
        query=(
            LAST_PULLED_AT,
            Query("schema_version", {"type": "integer", "minimum": 0},
                  f"The client's schema version (default {SCHEMA_VERSION})."),
            Query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
                  f"Records per page (default {DEFAULT_PAGE_SIZE})."),
            Query("migration", {"type": "string"},
                  "WatermelonDB's migration object, URL-encoded JSON."),
        ),
        errors={426: "schema_version is older than the oldest supported version."},
    ),
    Endpoint(
        "POST", "/api/v1/sync/push", push_changes,
        "Push a batch of changes (WatermelonDB pushChanges)", Access.USER,
        request_schema="sync-push", response_schema="sync-push-response", tags=("sync",),
        nul_per_record=True,
        description="Query: last_pulled_at, push_count (optional). A result per record; "
        "rejected ids also in experimentalRejectedIds. See docs/sync-protocol.md.",
        query=(
            LAST_PULLED_AT,
            Query("push_count", {"type": "integer", "minimum": 0},
                  "Optional: this device's count of pushes, the same on every retry of one "
                  "push and higher for each new push; a late copy of an older push then "
                  "never overwrites a newer one."),
        ),
    ),
]

"""Plain-row writes store what the ORM would: timestamps, JSON, None."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from starlette.applications import Starlette

from server.models.audit import AuditEvent
from server.models.rows import _sqlite_datetimes, insert_many


def test_sqlite_timestamps_are_formatted_like_the_driver_adapter() -> None:
    now = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    same_instant = now.astimezone(timezone(timedelta(hours=1)))
    assert now == same_instant  # equal, but not stored alike
    assert _sqlite_datetimes([now, now, now]) == [now.isoformat(" ")] * 3
    assert _sqlite_datetimes([now, same_instant]) == [
        "2026-03-01 09:30:00+00:00", "2026-03-01 10:30:00+01:00"]
    assert _sqlite_datetimes([None, now, None]) == [None, now.isoformat(" "), None]
    micro = now.replace(microsecond=5)
    assert _sqlite_datetimes([micro, now]) == [
        "2026-03-01 09:30:00.000005+00:00", "2026-03-01 09:30:00+00:00"]


async def test_insert_many_reads_back_through_the_orm(db: Starlette) -> None:
    conn = db.state.database.connection()
    now = datetime(2026, 3, 1, 9, 30, 0, 250, tzinfo=UTC)
    rows = [
        {"actor_id": None, "action": "a", "entity": "observation", "entity_id": str(i),
         "data": {"n": i, "text": "é\u2028", "none": None} if i else {}, "created_at": now}
        for i in range(3)
    ]
    rows[2]["created_at"] = now + timedelta(days=1)
    await insert_many(conn, AuditEvent, rows)
    stored = await AuditEvent.filter(entity="observation").order_by("entity_id")
    assert [e.data for e in stored] == [r["data"] for r in rows]
    assert [e.created_at for e in stored] == [r["created_at"] for r in rows]
    assert [e.actor_id for e in stored] == [None, None, None]  # type: ignore[attr-defined]

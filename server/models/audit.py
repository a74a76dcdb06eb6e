"""The audit trail: who did what to which record, when and why.  Append-only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tortoise import fields
from tortoise.models import Model

from server.models.rows import insert_many


class AuditEvent(Model):
    id = fields.BigIntField(primary_key=True)
    actor: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.User", related_name="audit_events", null=True, on_delete=fields.SET_NULL
    )
    # A dotted verb, e.g. ``user.created``, ``token.issued``, ``review.decided``.
    action = fields.CharField(max_length=64)
    entity = fields.CharField(max_length=32)
    entity_id = fields.CharField(max_length=64)
    data: fields.Field[dict[str, Any]] = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True, db_index=True)

    class Meta:
        table = "audit_events"
        indexes = (("entity", "entity_id"),)


async def record(
    action: str,
    entity: str,
    entity_id: object,
    *,
    actor: Any = None,
    data: dict[str, Any] | None = None,
    using_db: Any = None,
) -> AuditEvent:
    return await AuditEvent.create(
        action=action,
        entity=entity,
        entity_id=str(entity_id),
        actor=actor,
        data=data or {},
        using_db=using_db,
    )


async def record_many(
    events: list[tuple[str, str, object, dict[str, Any]]], *, using_db: Any
) -> None:
    """Append many events without an actor, ``(action, entity, entity_id, data)``
    each, in one statement (a sync push audits every status its checks move)."""
    now = datetime.now(UTC)
    await insert_many(using_db, AuditEvent, [
        {"actor_id": None, "action": action, "entity": entity, "entity_id": str(entity_id),
         "data": data, "created_at": now}
        for action, entity, entity_id, data in events
    ])

"""Tombstones: deleted rows are kept for a retention period so devices learn of
the delete, then purged.  The purge raises the *horizon*: a device whose
cursor is older than the newest purged tombstone could have missed a delete,
so its next pull is a full resync (never silent loss)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tortoise.transactions import in_transaction

from server.models.observations import Observation, Photo
from server.models.reference import Phenophase, Project, Taxon
from server.sync_store import HORIZON_ID

SYNCED_MODELS = (Photo, Observation, Project, Taxon, Phenophase)


async def purge_tombstones(retention_days: int, now: datetime | None = None) -> int:
    """Delete tombstones older than ``retention_days``; return how many."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    purged = 0
    async with in_transaction() as conn:
        horizon = 0
        for model in SYNCED_MODELS:
            query = model.filter(is_deleted=True, deleted_at__lt=cutoff).using_db(conn)
            seqs = await query.values_list("updated_seq", flat=True)
            if seqs:
                horizon = max([horizon, *(int(str(s)) for s in seqs)])
                purged += await query.delete()
        if horizon:
            await conn.execute_query(
                f"INSERT INTO sync_counter (id, value) VALUES ({HORIZON_ID}, {int(horizon)}) "
                f"ON CONFLICT (id) DO UPDATE SET value = "
                f"CASE WHEN sync_counter.value > {int(horizon)} THEN sync_counter.value "
                f"ELSE {int(horizon)} END"
            )
    return purged

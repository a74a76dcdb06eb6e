"""Re-run the checks over records whose review is still open, when what the
checks learn from has changed (newly verified records move the season
statistics; a coordinator moved a project's area or uncertainty limit)."""

from __future__ import annotations

from tortoise.transactions import in_transaction

from schemas.observation import ReviewStatus
from server.models.observations import Observation
from server.quality.runner import run_checks

OPEN = (ReviewStatus.PENDING, ReviewStatus.AUTO_ACCEPTED, ReviewStatus.NEEDS_REVIEW,
        ReviewStatus.NEEDS_INFO)
BATCH = 500


async def recheck(project_id: int | None = None) -> tuple[int, int]:
    """Check every open record (of one project, or all) in batches, one
    transaction per batch; returns (records checked, records changed)."""
    query = Observation.filter(is_deleted=False, review_status__in=OPEN)
    if project_id is not None:
        query = query.filter(project_id=project_id)
    ids = [str(i) for i in await query.order_by("id").values_list("id", flat=True)]
    changed = 0
    for start in range(0, len(ids), BATCH):
        async with in_transaction() as conn:
            changed += len(await run_checks(ids[start:start + BATCH], conn, edited=False))
    return len(ids), changed

"""Reviewer statistics: what I decided, how often the outcome agreed, and
how much waits in the queues I review."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.functions import Count

from schemas.observation import ReviewStatus
from server.models.accounts import User
from server.models.reference import Project
from server.models.review import ReviewDecision, ReviewQueueItem
from server.review.queue import Scope, now_ms


async def reviewer_stats(user: User, scope: Scope) -> dict[str, Any]:
    by_decision = dict(
        await ReviewDecision.filter(reviewer_id=user.id).group_by("decision").annotate(
            n=Count("id")
        ).values_list("decision", "n")
    )
    week = await ReviewDecision.filter(
        reviewer_id=user.id, created_at__gte=datetime.now(UTC) - timedelta(days=7)
    ).count()
    settled = await ReviewDecision.filter(
        reviewer_id=user.id, decision__in=["verify", "reject"],
        observation__review_status__in=[ReviewStatus.VERIFIED, ReviewStatus.REJECTED],
    ).values_list("decision", "observation__review_status")
    agreed = sum(
        1 for decision, status in settled
        if (decision, str(status)) in (("verify", "verified"), ("reject", "rejected"))
    )
    slugs = dict(await Project.filter(id__in=list(scope.projects)).values_list("id", "slug"))
    queues = []
    for pid in scope.projects:
        waiting = ReviewQueueItem.filter(project_id=pid)
        queues.append({
            "project": slugs.get(pid),
            "waiting": await waiting.count(),
            "escalated": await waiting.filter(expert_only=True).count(),
            "claimed_by_me": await waiting.filter(
                claimed_by_id=user.id, lease_expires_ms__gte=now_ms()).count(),
            "expert": pid in scope.expert_projects,
        })
    return {
        "reviewer": user.username,
        "decisions": sum(by_decision.values()),
        "by_decision": {str(k): v for k, v in by_decision.items()},
        "last_7_days": week,
        "settled": len(settled),
        "agreed_with_outcome": agreed,
        "queues": queues,
    }

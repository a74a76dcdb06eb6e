"""Deciding a record: checks, the decision row, consensus, the state change.

Every decision, correction and state change goes into the audit trail.
Server-owned changes take a new sync number (``updated_seq``) and never touch
``client_changed_seq``: they reach the volunteer's device on its next pull
and never conflict with the volunteer's own edits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from schemas import errors
from schemas.observation import Decision, ReviewStatus
from server.models import audit
from server.models.accounts import User
from server.models.observations import Observation
from server.models.reference import Phenophase, Taxon
from server.models.review import ReviewDecision, ReviewQueueItem
from server.models.sequence import next_seq
from server.review import access
from server.review.consensus import Kind, Vote, outcome
from server.review.queue import now_ms
from server.review.sql import Sql

SETTLES_TO = {
    Decision.VERIFY: ReviewStatus.VERIFIED,
    Decision.REJECT: ReviewStatus.REJECTED,
    Decision.NEEDS_INFO: ReviewStatus.NEEDS_INFO,
}


@dataclass(frozen=True)
class DecisionRequest:
    observation_id: str
    decision: Decision
    corrected_taxon_id: int | None = None
    corrected_phenophase_id: int | None = None
    comment: str = ""

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> DecisionRequest:
        return cls(
            observation_id=body["observation_id"],
            decision=Decision(body["decision"]),
            corrected_taxon_id=body.get("corrected_taxon_id"),
            corrected_phenophase_id=body.get("corrected_phenophase_id"),
            comment=body.get("comment", ""),
        )


async def _locked_item(conn: BaseDBAsyncClient, observation_id: str) -> ReviewQueueItem | None:
    if conn.capabilities.dialect == "postgres":
        # Serialise decisions on one record: the second waits, then sees the first.
        sql = Sql(conn)
        await conn.execute_query(
            f"SELECT id FROM review_queue WHERE observation_id = {sql(observation_id)} "
            "FOR UPDATE", sql.values,
        )
    return await ReviewQueueItem.get_or_none(observation_id=observation_id, using_db=conn)


async def decide(user: User, request: DecisionRequest, *, lease_ms: int,
                 claim: bool = False) -> dict[str, Any]:
    """Record one decision.  ``claim`` (bulk decisions) takes a free item's lease
    in the same step; otherwise the reviewer must hold a live lease."""
    async with in_transaction() as conn:
        item = await _locked_item(conn, request.observation_id)
        obs = await Observation.get_or_none(
            id=request.observation_id, using_db=conn
        ).select_related("project")
        if obs is not None and not obs.is_deleted:
            return await _decide(conn, user, request, obs, item, claim=claim)
        if item is not None:  # deleted since it was queued: clean up, then say so
            await item.delete(using_db=conn)
    raise errors.NotFound(f"There is no observation {request.observation_id}.")


async def _decide(conn: BaseDBAsyncClient, user: User, request: DecisionRequest,
                  obs: Observation, item: ReviewQueueItem | None, *,
                  claim: bool) -> dict[str, Any]:
    role = await access.project_role(user, obs.project_id)  # type: ignore[attr-defined]
    if not access.may_review(role):
        raise errors.PermissionDenied(
            f"You are not a reviewer in project {obs.project.slug!r}."
        )
    if obs.user_id == user.id:  # type: ignore[attr-defined]
        raise errors.PermissionDenied("Nobody reviews their own record.")
    if item is None:
        raise errors.NotInQueue(
            f"Observation {obs.id} is {obs.review_status}, not waiting for review."
        )
    expert = access.is_expert(role)
    if item.expert_only and not expert:
        raise errors.PermissionDenied(
            "Reviewers disagreed on this record: it waits for an expert."
        )
    _check_lease(item, user.id, claim=claim)
    corrected_taxon, corrected_phase = await _corrections(request, obs, conn)
    if await ReviewDecision.exists(observation_id=obs.id, reviewer_id=user.id,
                                   round=item.round, using_db=conn):
        raise errors.Conflict("You have already decided this record in this round.",
                              code="already_decided")
    row = await ReviewDecision.create(
        observation_id=obs.id, reviewer_id=user.id, decision=request.decision,
        is_expert=expert, corrected_taxon_id=corrected_taxon,
        corrected_phenophase_id=corrected_phase, comment=request.comment,
        round=item.round, using_db=conn,
    )
    await audit.record(
        "review.decided", "observation", obs.id, actor=user, using_db=conn,
        data={"decision": str(request.decision), "expert": expert, "round": item.round,
              "corrected_taxon_id": corrected_taxon,
              "corrected_phenophase_id": corrected_phase, "comment": request.comment,
              "decision_id": row.id},
    )
    votes = [
        Vote(Decision(d.decision), d.is_expert,
             d.corrected_taxon_id or obs.taxon_id,  # type: ignore[attr-defined]
             d.corrected_phenophase_id or obs.phenophase_id)  # type: ignore[attr-defined]
        for d in await ReviewDecision.filter(observation_id=obs.id, round=item.round)
        .using_db(conn).order_by("id")
    ]
    result = outcome(votes, obs.project.agreements_required)
    if result.kind is Kind.SETTLED:
        assert result.vote is not None
        await _settle(obs, result.vote, item, user, conn, by_expert=expert)
    else:
        item.claimed_by_id = None
        item.lease_expires_ms = 0
        if result.kind is Kind.ESCALATED and not item.expert_only:
            item.expert_only = True
            await audit.record(
                "review.escalated", "observation", obs.id, actor=user, using_db=conn,
                data={"round": item.round, "verdicts": sorted({v.verdict()[0] for v in votes})},
            )
        await item.save(using_db=conn,
                        update_fields=["claimed_by_id", "lease_expires_ms", "expert_only"])
    return {
        "observation_id": obs.id, "decision": str(request.decision),
        "outcome": str(result.kind), "review_status": str(obs.review_status),
        "verified_taxon_id": obs.verified_taxon_id,  # type: ignore[attr-defined]
        "verified_phenophase_id": obs.verified_phenophase_id,  # type: ignore[attr-defined]
    }


def _check_lease(item: ReviewQueueItem, user_id: int, *, claim: bool) -> None:
    now = now_ms()
    mine = item.claimed_by_id == user_id
    live = item.lease_expires_ms >= now
    if mine and not live:
        raise errors.LeaseExpired(
            "Your claim on this record expired: claim it again before deciding."
        )
    if mine:
        return
    if item.claimed_by_id is not None and live:
        raise errors.Conflict("Another reviewer has claimed this record.",
                              code="claimed_by_another")
    if not claim:
        raise errors.NotClaimed()


async def _corrections(request: DecisionRequest, obs: Observation,
                       conn: BaseDBAsyncClient) -> tuple[int | None, int | None]:
    taxon_id, phase_id = request.corrected_taxon_id, request.corrected_phenophase_id
    if (taxon_id or phase_id) and request.decision is not Decision.VERIFY:
        raise errors.ValidationFailed("Only a verify decision may correct taxon or phenophase.")
    if taxon_id == obs.taxon_id:  # type: ignore[attr-defined]
        taxon_id = None
    if phase_id == obs.phenophase_id:  # type: ignore[attr-defined]
        phase_id = None
    if taxon_id is None and phase_id is None:
        return None, None
    taxon = await Taxon.get_or_none(id=taxon_id or obs.taxon_id,  # type: ignore[attr-defined]
                                    is_deleted=False, using_db=conn)
    phase = await Phenophase.get_or_none(
        id=phase_id or obs.phenophase_id, is_deleted=False, using_db=conn  # type: ignore[attr-defined]
    )
    if taxon is None or phase is None:
        raise errors.ValidationFailed("The corrected taxon or phenophase does not exist.")
    if not phase.applies_to(taxon):
        raise errors.ValidationFailed(
            f"Phenophase {phase.name!r} does not apply to {taxon.scientific_name}."
        )
    return taxon_id, phase_id


async def _settle(obs: Observation, vote: Vote, item: ReviewQueueItem, actor: User,
                  conn: BaseDBAsyncClient, *, by_expert: bool) -> None:
    before = str(obs.review_status)
    obs.review_status = SETTLES_TO[vote.decision]
    if vote.decision is Decision.VERIFY:
        obs.verified_taxon_id = vote.taxon_id
        obs.verified_phenophase_id = vote.phenophase_id
    else:
        obs.verified_taxon_id = obs.verified_phenophase_id = None
    obs.updated_seq = await next_seq(conn)
    await obs.save(using_db=conn, update_fields=[
        "review_status", "verified_taxon_id", "verified_phenophase_id", "updated_seq",
        "server_updated_at",
    ])
    await item.delete(using_db=conn)
    await audit.record(
        "review.status_changed", "observation", obs.id, actor=actor, using_db=conn,
        data={"from": before, "to": str(obs.review_status), "round": item.round,
              "reason": "expert" if by_expert else (
                  "needs_info" if vote.decision is Decision.NEEDS_INFO else "consensus")},
    )
    taxon_id, phase_id = obs.taxon_id, obs.phenophase_id  # type: ignore[attr-defined]
    if vote.decision is Decision.VERIFY and (vote.taxon_id, vote.phenophase_id) != (
        taxon_id, phase_id
    ):
        await audit.record(
            "review.corrected", "observation", obs.id, actor=actor, using_db=conn,
            data={"taxon_id": {"from": taxon_id, "to": vote.taxon_id},
                  "phenophase_id": {"from": phase_id, "to": vote.phenophase_id}},
        )


async def decide_many(user: User, requests: list[DecisionRequest], *,
                      lease_ms: int) -> list[dict[str, Any]]:
    """Bulk decisions: each claims its item and decides it in its own transaction;
    one failure does not stop the others."""
    results: list[dict[str, Any]] = []
    for request in requests:
        try:
            result = await decide(user, request, lease_ms=lease_ms, claim=True)
            results.append({"status": "applied", **result})
        except errors.PhenosyncError as error:
            results.append({"observation_id": request.observation_id, "status": "rejected",
                            **error.to_dict()})
    return results

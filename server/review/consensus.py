"""Consensus: when do the decisions of one round settle a record?

- One expert's decision settles it (the newest expert decision wins).
- ``needs_info`` from any reviewer sends the record back to the volunteer at
  once: it is a question, not a verdict.
- Otherwise the reviewers' verdicts (verify with the taxon and phenophase
  they name, or reject) must agree: ``agreements_required`` equal verdicts
  settle it; two different verdicts escalate it to the experts' queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from schemas.observation import Decision


@dataclass(frozen=True)
class Vote:
    decision: Decision
    is_expert: bool
    # What the reviewer says the record is (the correction, or the original).
    taxon_id: int | None
    phenophase_id: int | None

    def verdict(self) -> tuple[str, int | None, int | None]:
        if self.decision is Decision.VERIFY:
            return (str(self.decision), self.taxon_id, self.phenophase_id)
        return (str(self.decision), None, None)


class Kind(StrEnum):
    SETTLED = "settled"
    WAITING = "waiting"
    ESCALATED = "escalated"


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    vote: Vote | None = None  # the settling verdict


def outcome(votes: list[Vote], agreements_required: int) -> Outcome:
    """``votes`` oldest first: every decision of the current round."""
    experts = [v for v in votes if v.is_expert]
    if experts:
        return Outcome(Kind.SETTLED, experts[-1])
    if votes and votes[-1].decision is Decision.NEEDS_INFO:
        return Outcome(Kind.SETTLED, votes[-1])
    verdicts = [v for v in votes if v.decision is not Decision.NEEDS_INFO]
    if len({v.verdict() for v in verdicts}) > 1:
        return Outcome(Kind.ESCALATED)
    if verdicts and len(verdicts) >= max(1, agreements_required):
        return Outcome(Kind.SETTLED, verdicts[-1])
    return Outcome(Kind.WAITING)

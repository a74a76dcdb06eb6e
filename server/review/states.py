"""Review states and the moves between them.

    pending ──checks──> auto_accepted (no flags, project allows)
       │                     │ a re-check finds a flag
       └──────checks──> needs_review <───────────────┘
                             │  consensus or an expert
              ┌──────────────┼───────────────┐
          verified        rejected       needs_info ──volunteer edits──> checks again

A volunteer's later edit of a verified or rejected record keeps the verdict
(reviewer results never conflict with a volunteer's edits): the verified
taxon and phenophase stay what the reviewers confirmed, and the flags are
brought up to date for the next reviewer who looks.
"""

from __future__ import annotations

from schemas.observation import ReviewStatus

DECIDED = frozenset({ReviewStatus.VERIFIED, ReviewStatus.REJECTED})


def after_checks(current: ReviewStatus | str, flag_count: int, *, auto_accept: bool,
                 edited: bool) -> ReviewStatus:
    current = ReviewStatus(current)
    fresh = (ReviewStatus.AUTO_ACCEPTED if flag_count == 0 and auto_accept
             else ReviewStatus.NEEDS_REVIEW)
    if current is ReviewStatus.PENDING:
        return fresh
    if edited and current is ReviewStatus.NEEDS_INFO:
        return fresh
    if current is ReviewStatus.AUTO_ACCEPTED and flag_count > 0:
        return ReviewStatus.NEEDS_REVIEW
    return current

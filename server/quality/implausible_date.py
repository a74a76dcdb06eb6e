"""``implausible_date``: a date that cannot be right, or a record typed in
long after the fact (more than a year between observing and recording)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from server.quality.check import Check, CheckContext, Finding, Subject

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATE_ENTRY = timedelta(days=366)


def run(obs: Subject, ctx: CheckContext) -> Finding | None:
    if obs.observed_at < EARLIEST:
        return Finding(
            CHECK.code,
            f"Observed on {obs.observed_at:%Y-%m-%d}, before 1900: probably a typing error "
            f"in the year.",
            {"observed_at": obs.observed_at.isoformat(), "earliest": EARLIEST.isoformat()},
        )
    # The phone's own creation time: a record synced late was still made on time.
    recorded = obs.client_created_at
    if recorded is not None and recorded - obs.observed_at > LATE_ENTRY:
        days = (recorded - obs.observed_at).days
        return Finding(
            CHECK.code,
            f"Observed on {obs.observed_at:%Y-%m-%d} but recorded {days} days later, on "
            f"{recorded:%Y-%m-%d}: check the year.",
            {"observed_at": obs.observed_at.isoformat(), "recorded_at": recorded.isoformat(),
             "days": days},
        )
    return None


CHECK = Check(
    "implausible_date",
    "Implausible date",
    "The date is before 1900, or more than a year before the record was made on the phone. "
    "Old notebooks are welcome, but most such dates are a wrong year.",
    run,
)

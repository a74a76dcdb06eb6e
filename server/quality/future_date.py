"""``future_date``: observed after the server received the record.

A push more than a day in the future is refused outright (``sync.records``);
within that day of clock-skew tolerance the record is kept but flagged.
"""

from __future__ import annotations

from server.quality.check import Check, CheckContext, Finding, Subject


def run(obs: Subject, ctx: CheckContext) -> Finding | None:
    received = obs.server_created_at or ctx.now
    if obs.observed_at <= received:
        return None
    hours = (obs.observed_at - received).total_seconds() / 3600
    return Finding(
        CHECK.code,
        f"Observed at {obs.observed_at:%Y-%m-%d %H:%M} UTC, {hours:.1f} hours after the "
        f"server received the record: the phone's date or time zone is probably wrong.",
        {"observed_at": obs.observed_at.isoformat(), "received_at": received.isoformat()},
    )


CHECK = Check(
    "future_date",
    "Date in the future",
    "The observation's date and time are later than the moment the server received it. "
    "Usually the phone's clock or time zone is wrong; ask the observer for the real date.",
    run,
)

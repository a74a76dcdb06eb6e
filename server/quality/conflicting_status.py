"""``conflicting_status``: the same observer said "yes" and "no" for the same
taxon and phenophase at the same place on the same (local) day."""

from __future__ import annotations

from datetime import timedelta

from schemas.observation import Status
from server.models.observations import Observation
from server.quality.check import Check, CheckContext, Finding, distance_m, local_time

SAME_PLACE_M = 100.0




async def run(obs: Observation, ctx: CheckContext) -> Finding | None:
    if obs.status == Status.UNKNOWN:
        return None
    day = local_time(obs).date()
    # Only the opposite status can conflict: asking for it alone keeps a push
    # of many same-day records of one site linear, not quadratic.
    opposite = Status.NO if obs.status == Status.YES else Status.YES
    candidates = await Observation.filter(
        user_id=obs.user_id,  # type: ignore[attr-defined]
        taxon_id=obs.taxon_id,  # type: ignore[attr-defined]
        phenophase_id=obs.phenophase_id,  # type: ignore[attr-defined]
        status=opposite,
        observed_at__gte=obs.observed_at - timedelta(days=2),
        observed_at__lte=obs.observed_at + timedelta(days=2),
        is_deleted=False,
    ).exclude(id=obs.id).using_db(ctx.conn)
    conflicts = [
        other for other in candidates
        if local_time(other).date() == day
        and distance_m(obs.latitude, obs.longitude, other.latitude, other.longitude)
        <= SAME_PLACE_M
    ]
    if not conflicts:
        return None
    ctx.partners.update(o.id for o in conflicts)
    return Finding(
        CHECK.code,
        f"On {day:%Y-%m-%d} the same observer also reported {conflicts[0].status!s:} for this "
        f"taxon and phenophase within {SAME_PLACE_M:.0f} m ({len(conflicts)} record(s)): "
        f"one of the two is probably wrong.",
        {"conflicting_ids": sorted(o.id for o in conflicts), "date": day.isoformat()},
    )


CHECK = Check(
    "conflicting_status",
    "Conflicting status",
    "The observer reported both 'yes' and 'no' for the same taxon and phenophase at the "
    "same place on the same day. One of them may be a different plant or a mis-tap; look "
    "at both records (listed under the observer's recent records).",
    run,
)

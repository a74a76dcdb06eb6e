"""Run the registered checks on observations and write what they find."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from server.models import audit
from server.models.observations import Observation, QualityFlag
from server.models.sequence import next_seq
from server.quality.check import CheckContext, Finding
from server.quality.registry import CHECKS, OWN_CODES
from server.review import queue, states


async def run_checks(
    observation_ids: Iterable[str], conn: BaseDBAsyncClient, *, edited: bool = True,
    seq: int | Mapping[str, int] | None = None, now: datetime | None = None,
) -> list[str]:
    """Check the observations; return the ids whose flags or review status changed.

    ``edited`` says the volunteer has just created or changed the records
    (the push path): an edit returns a ``needs_info`` record to review.
    Otherwise (a re-check) only flags, counts and auto-acceptance move.
    Server-owned changes take a new sync number so that devices pull them,
    unless ``seq`` is given: the number (or, per id, the numbers) the caller's
    write of these records took in this transaction (the push), which covers
    the flags too.
    ``client_changed_seq`` is never touched, so they never conflict.
    """
    ctx = CheckContext(conn, now or datetime.now(UTC))
    ids = sorted(set(observation_ids))
    changed = await _check(ids, ctx, edited=edited, seq=seq)
    # Records a finding involves (the other half of a conflicting status)
    # get the flag too, once: their own re-check adds no further partners.
    partners = sorted(ctx.partners - set(ids))
    if partners:
        changed += await _check(partners, CheckContext(conn, ctx.now), edited=False)
    return changed


async def _check(ids: list[str], ctx: CheckContext, *, edited: bool,
                 seq: int | Mapping[str, int] | None = None) -> list[str]:
    conn = ctx.conn
    observations = await Observation.filter(id__in=ids, is_deleted=False).using_db(
        conn
    ).select_related("project", "taxon", "phenophase")
    if not observations:
        return []
    existing: dict[str, dict[str, QualityFlag]] = {}
    for flag in await QualityFlag.filter(observation_id__in=ids).using_db(conn):
        existing.setdefault(flag.observation_id, {})[flag.code] = flag  # type: ignore[attr-defined]
    changed: list[tuple[Observation, str, list[str]]] = []
    for obs in observations:
        findings: dict[str, Finding] = {}
        for check in CHECKS:
            assert check.run is not None
            found = await check.run(obs, ctx)
            if found is not None:
                findings[found.code] = found
        current = existing.get(obs.id, {})
        flags_moved = await _write_flags(obs, current, findings, conn)
        codes = sorted((set(current) - OWN_CODES) | set(findings))
        before = obs.review_status
        after = states.after_checks(before, len(codes), auto_accept=obs.project.auto_accept,
                                    edited=edited)
        if flags_moved or after != before or obs.flag_count != len(codes):
            obs.flag_count = len(codes)
            obs.review_status = after
            changed.append((obs, str(before), codes))
        await queue.sync_item(obs, conn)
    if changed:
        given = seq if isinstance(seq, Mapping) else {o.id: seq for o, _, _ in changed
                                                     if seq is not None}
        fresh = [o for o, _, _ in changed if o.id not in given]
        first = await next_seq(conn, len(fresh)) - len(fresh) + 1 if fresh else 0
        numbers = {**{o.id: first + i for i, o in enumerate(fresh)}, **given}
        for obs, was, codes in changed:
            number = numbers[obs.id]
            obs.updated_seq = number
            await obs.save(using_db=conn, update_fields=[
                "flag_count", "review_status", "verified_taxon_id", "verified_phenophase_id",
                "updated_seq", "server_updated_at",
            ])
            if was != str(obs.review_status):
                await audit.record(
                    "review.status_changed", "observation", obs.id, using_db=conn,
                    data={"from": was, "to": str(obs.review_status),
                          "reason": "edited" if edited else "quality checks", "flags": codes},
                )
    return [obs.id for obs, _, _ in changed]


async def _write_flags(obs: Observation, current: dict[str, QualityFlag],
                       findings: dict[str, Finding], conn: BaseDBAsyncClient) -> bool:
    """Add, refresh and remove this module's flags; True when the set of codes moved."""
    gone = [f.id for code, f in current.items() if code in OWN_CODES and code not in findings]
    if gone:
        await QualityFlag.filter(id__in=gone).using_db(conn).delete()
    new = [QualityFlag(observation_id=obs.id, code=f.code, message=f.message, details=f.details)
           for code, f in findings.items() if code not in current]
    if new:
        await QualityFlag.bulk_create(new, using_db=conn)
    for code, f in findings.items():
        old = current.get(code)
        if old is not None and (old.message, old.details) != (f.message, f.details):
            old.message, old.details = f.message, f.details
            await old.save(using_db=conn, update_fields=["message", "details"])
    return bool(gone or new)

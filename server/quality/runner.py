"""Run the registered checks on observations and write what they find.

The checks run on a batch at once: reference data is loaded once, a check
that needs the database asks it once for the whole batch (``Check.prepare``),
and the flags, review-queue rows, observation columns and audit events are
written with one statement each.  The sync push calls ``evaluate`` before it
writes its records (so that each row is written once, with its review
status) and ``settle`` after; everything else calls ``run_checks``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from schemas.observation import ReviewStatus
from server.models import audit
from server.models.observations import Observation, QualityFlag
from server.models.reference import Phenophase, Project, Taxon
from server.models.rows import (
    as_datetime,
    delete_in,
    insert_many,
    placeholder,
    select_in,
    update_many,
)
from server.models.sequence import next_seq
from server.quality.check import CheckContext, Finding, Subject
from server.quality.registry import CHECKS, OWN_CODES
from server.review import queue, states


@dataclass
class Outcome:
    """What the checks found for one observation, and what must be written."""

    subject: Subject
    created_seq: int
    codes: list[str]  # every open flag code after the checks
    before: str  # review status
    after: str
    changed: bool  # flags, flag count or review status moved
    new_flags: list[Finding] = field(default_factory=list)
    gone_flags: list[int] = field(default_factory=list)  # flag row ids
    reworded: list[tuple[int, Finding]] = field(default_factory=list)


@dataclass
class Batch:
    """The outcomes of one ``evaluate``, with its context (partners found)."""

    outcomes: list[Outcome]
    ctx: CheckContext
    edited: bool
    new: frozenset[str] = frozenset()  # ids created in this transaction


@dataclass
class References:
    """Projects, taxa and phenophases by id, as model instances."""

    projects: dict[int, Project]
    taxa: dict[int, Taxon]
    phenophases: dict[int, Phenophase]

    @classmethod
    async def load(cls, conn: BaseDBAsyncClient, project_ids: Iterable[int],
                   taxon_ids: Iterable[int], phenophase_ids: Iterable[int], *,
                   live: bool = False) -> References:
        """The rows of these ids (``live``: only those not deleted), as model
        instances built from plain rows: no query builder (a sync push
        loads them for every batch)."""
        async def by_id(model: Any, ids: Iterable[int]) -> dict[int, Any]:
            return {r.id: r for r in await plain_models(conn, model, ids, live=live)}

        return cls(await by_id(Project, project_ids), await by_id(Taxon, taxon_ids),
                   await by_id(Phenophase, phenophase_ids))


async def plain_models(conn: BaseDBAsyncClient, model: Any, ids: Iterable[int], *,
                       live: bool = False) -> list[Any]:
    """Instances of ``model`` by primary key from ``SELECT *`` rows (the ORM's
    own row-to-instance step).  Ids outside the key's type (an INTEGER on
    PostgreSQL) cannot be stored: they are left out, not sent to the database."""
    bounds = model._meta.pk.constraints
    low, high = bounds.get("ge", -(2**63)), bounds.get("le", 2**63 - 1)
    wanted = sorted({i for i in ids if low <= i <= high})
    if not wanted:
        return []
    where = f"is_deleted = {placeholder(conn, len(wanted) + 1)}" if live else ""
    rows = await select_in(conn, "*", f'"{model._meta.db_table}"', "id", wanted, where,
                           extra=[False] if live else [])
    return [model._init_from_db(**r) for r in rows]


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
    write of these records took in this transaction, which covers the flags too.
    ``client_changed_seq`` is never touched, so they never conflict.
    """
    now = now or datetime.now(UTC)
    ids = sorted(set(observation_ids))
    subjects, created = await _stored(ids, conn)
    batch = await evaluate(subjects, conn, now=now, edited=edited, created_seqs=created)
    changed = [o for o in batch.outcomes if o.changed]
    given = seq if isinstance(seq, Mapping) else {o.subject.id: seq for o in changed
                                                 if seq is not None}
    fresh = [o for o in changed if o.subject.id not in given]
    first = await next_seq(conn, len(fresh)) - len(fresh) + 1 if fresh else 0
    numbers = {**{o.subject.id: first + i for i, o in enumerate(fresh)}, **given}
    await update_many(conn, Observation, "id", [
        {"flag_count": len(o.codes), "review_status": o.after,
         "updated_seq": numbers[o.subject.id], "server_updated_at": now, "id": o.subject.id}
        for o in changed
    ])
    return [o.subject.id for o in changed] + await settle(batch, conn)


async def _stored(ids: list[str], conn: BaseDBAsyncClient
                  ) -> tuple[list[Subject], dict[str, int]]:
    rows = await select_in(conn, "*", "observations", "id", ids)
    rows = [r for r in rows if not r["is_deleted"]]
    refs = await References.load(conn, (r["project_id"] for r in rows),
                                 (r["taxon_id"] for r in rows),
                                 (r["phenophase_id"] for r in rows))
    subjects = [subject(r, refs) for r in sorted(rows, key=lambda r: r["id"])]
    return subjects, {r["id"]: int(r["created_seq"]) for r in rows}


def subject(r: Mapping[str, Any], refs: References) -> Subject:
    """A subject from a plain ``observations`` row (or the values about to be one)."""
    return Subject(
        id=r["id"], user_id=int(r["user_id"]), project=refs.projects[r["project_id"]],
        taxon=refs.taxa[r["taxon_id"]], phenophase=refs.phenophases[r["phenophase_id"]],
        status=str(r["status"]), intensity=r["intensity"],
        observed_at=as_datetime(r["observed_at"]),  # type: ignore[arg-type]
        observed_utc_offset_min=int(r["observed_utc_offset_min"]),
        latitude=float(r["latitude"]), longitude=float(r["longitude"]),
        coordinate_uncertainty_m=(None if r["coordinate_uncertainty_m"] is None
                                  else float(r["coordinate_uncertainty_m"])),
        client_created_at=as_datetime(r["client_created_at"]),
        server_created_at=as_datetime(r["server_created_at"]),
        review_status=str(r["review_status"]), flag_count=int(r["flag_count"]),
    )


async def evaluate(subjects: list[Subject], conn: BaseDBAsyncClient, *, now: datetime,
                   edited: bool, created_seqs: Mapping[str, int],
                   new: frozenset[str] = frozenset()) -> Batch:
    """Run every check on the subjects; decide flags and review status.

    Writes nothing.  ``new`` are ids not stored yet (no flags to look up).
    """
    ctx = CheckContext(conn, now)
    for check in CHECKS:
        if check.prepare is not None:
            await check.prepare(subjects, ctx)
    existing: dict[str, dict[str, dict[str, Any]]] = {}
    for flag in await select_in(conn, "id, observation_id, code, message, details",
                                "quality_flags", "observation_id",
                                [s.id for s in subjects if s.id not in new]):
        existing.setdefault(flag["observation_id"], {})[flag["code"]] = flag
    runs = [check.run for check in CHECKS if check.run is not None]
    outcomes = []
    for s in subjects:
        findings: dict[str, Finding] = {}
        for run in runs:
            found = run(s, ctx)
            if found is not None:
                findings[found.code] = found
        current = existing.get(s.id)
        if current:
            gone = [int(f["id"]) for code, f in current.items()
                    if code in OWN_CODES and code not in findings]
            added = [f for code, f in findings.items() if code not in current]
            reworded = [
                (int(current[code]["id"]), f) for code, f in findings.items()
                if code in current
                and (current[code]["message"], _details(current[code]["details"]))
                != (f.message, f.details)
            ]
            codes = sorted((set(current) - OWN_CODES) | set(findings))
        else:  # no stored flags (a new record, most of a push)
            gone, added, reworded = [], list(findings.values()), []
            codes = sorted(findings)
        after = states.after_checks(s.review_status, len(codes),
                                    auto_accept=s.project.auto_accept, edited=edited)
        changed = bool(gone or added) or after != s.review_status or s.flag_count != len(codes)
        outcomes.append(Outcome(s, created_seqs[s.id], codes, str(s.review_status), str(after),
                                changed, added, gone, reworded))
    return Batch(outcomes, ctx, edited, new)


def _details(value: Any) -> Any:
    if isinstance(value, (str, bytes)):
        return QualityFlag._meta.fields_map["details"].to_python_value(value)
    return value


async def settle(batch: Batch, conn: BaseDBAsyncClient) -> list[str]:
    """Write what ``evaluate`` decided, once the observations are stored with
    their new flag count and review status: flags, review-queue rows, audit
    events.  Then re-check the other halves of conflicting statuses (once:
    their own re-check adds no further partners).  Returns the partners'
    ids whose flags or status changed."""
    outcomes = batch.outcomes
    await delete_in(conn, QualityFlag, "id", [i for o in outcomes for i in o.gone_flags])
    now = batch.ctx.now
    await insert_many(conn, QualityFlag, [
        {"observation_id": o.subject.id, "code": f.code, "message": f.message,
         "details": f.details, "created_at": now}
        for o in outcomes for f in o.new_flags
    ])
    await update_many(conn, QualityFlag, "id", [
        {"message": f.message, "details": f.details, "id": flag_id}
        for o in outcomes for flag_id, f in o.reworded
    ])
    waiting = ReviewStatus.NEEDS_REVIEW
    await queue.sync_items([
        queue.Entry(o.subject.id, o.after == waiting, o.subject.project.id,
                    o.subject.taxon_id, o.subject.phenophase_id, o.subject.user_id,
                    -len(o.codes), o.created_seq)
        # A record created in this transaction that does not wait has no queue
        # row to add, move or remove.
        for o in outcomes if o.after == waiting or o.subject.id not in batch.new
    ], conn, new=batch.new)
    # A stored status that moved is audited; a record created in this
    # transaction has had no other status (its row, its flags and their
    # times say how it began): a push of 500 new records writes no 500 events.
    await audit.record_many([
        ("review.status_changed", "observation", o.subject.id,
         {"from": o.before, "to": o.after,
          "reason": "edited" if batch.edited else "quality checks", "flags": o.codes})
        for o in outcomes
        if o.changed and o.before != o.after and o.subject.id not in batch.new
    ], using_db=conn)
    ids = {o.subject.id for o in outcomes}
    partners = sorted(batch.ctx.partners - ids)
    if not partners:
        return []
    return await run_checks_once(partners, conn, now)


async def run_checks_once(ids: list[str], conn: BaseDBAsyncClient, now: datetime) -> list[str]:
    """A re-check that does not follow its own partners."""
    subjects, created = await _stored(ids, conn)
    batch = await evaluate(subjects, conn, now=now, edited=False, created_seqs=created)
    changed = [o for o in batch.outcomes if o.changed]
    first = await next_seq(conn, len(changed)) - len(changed) + 1 if changed else 0
    await update_many(conn, Observation, "id", [
        {"flag_count": len(o.codes), "review_status": o.after, "updated_seq": first + i,
         "server_updated_at": now, "id": o.subject.id}
        for i, o in enumerate(changed)
    ])
    batch.ctx.partners.clear()
    await settle(batch, conn)
    return [o.subject.id for o in changed]

"""The review queue: which records wait, in which order, and who holds them.

Order: most flags first, then oldest (the observation's ``created_seq``).
Each query is a range scan of one index, ``(project_id, expert_only,
flag_order, created_seq)``, that stops after ``limit`` rows, so its cost does
not grow with the queue: a reviewer with several projects gets one scan per
project, merged here.

Claims are leases (``PHENOSYNC_REVIEW_LEASE_MINUTES``): a claimed item is
skipped by everyone else until the lease expires.  Several server processes
may claim at once: on PostgreSQL the candidates are locked with
``SELECT … FOR UPDATE SKIP LOCKED`` (a concurrent claimer skips them instead
of waiting); on SQLite, which has one writer, each claim is a conditional
``UPDATE`` that succeeds only while the item is still free.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from schemas.observation import ReviewStatus
from server.models.observations import Observation
from server.models.review import ReviewQueueItem
from server.models.rows import delete_in, insert_many, placeholders, select_in, update_many
from server.review.sql import Sql

# How many times a claim looks again when other reviewers took its candidates.
CLAIM_ATTEMPTS = 3


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class QueueFilter:
    taxon_id: int | None = None
    phenophase_id: int | None = None
    flag: str | None = None


@dataclass(frozen=True)
class Scope:
    """What one reviewer may see: their projects, and which of them as an expert."""

    reviewer_id: int
    projects: tuple[int, ...]
    expert_projects: frozenset[int]


@dataclass(frozen=True)
class Entry:
    """What the queue needs of an observation: whether it waits for review,
    and the columns the queue copies."""

    observation_id: str
    waiting: bool  # needs_review and not deleted
    project_id: int
    taxon_id: int
    phenophase_id: int
    observer_id: int
    flag_order: int  # minus the flag count
    created_seq: int

    def copied(self) -> dict[str, Any]:
        return {"project_id": self.project_id, "taxon_id": self.taxon_id,
                "phenophase_id": self.phenophase_id, "observer_id": self.observer_id,
                "flag_order": self.flag_order, "created_seq": self.created_seq}


def entry(obs: Observation) -> Entry:
    return Entry(
        obs.id, obs.review_status == ReviewStatus.NEEDS_REVIEW and not obs.is_deleted,
        obs.project_id, obs.taxon_id, obs.phenophase_id,  # type: ignore[attr-defined]
        obs.user_id, -obs.flag_count, obs.created_seq,  # type: ignore[attr-defined]
    )


async def sync_item(obs: Observation, conn: BaseDBAsyncClient) -> None:
    """Make the queue agree with one observation."""
    await sync_items([entry(obs)], conn)


async def sync_items(entries: list[Entry], conn: BaseDBAsyncClient, *,
                     new: frozenset[str] = frozenset()) -> None:
    """Make the queue agree with the observations: a row exactly while one
    needs review.  A few statements for the whole batch; ``new`` are ids of
    observations created in this transaction (no queue row, no decisions)."""
    known = [e.observation_id for e in entries if e.observation_id not in new]
    items = {r["observation_id"]: r for r in await select_in(
        conn, "id, observation_id, project_id, taxon_id, phenophase_id, observer_id, "
        "flag_order, created_seq", "review_queue", "observation_id", known)}
    gone = [items[e.observation_id]["id"] for e in entries
            if not e.waiting and e.observation_id in items]
    await delete_in(conn, ReviewQueueItem, "id", gone)
    entering = [e for e in entries if e.waiting and e.observation_id not in items]
    rounds: dict[str, int] = {}
    asked = [e.observation_id for e in entering if e.observation_id not in new]
    if asked:
        sql = ("SELECT observation_id, MAX(round) AS last FROM review_decisions WHERE "
               f"observation_id IN ({placeholders(conn, len(asked))}) GROUP BY observation_id")
        rounds = {r["observation_id"]: int(r["last"] or 0)
                  for r in await conn.execute_query_dict(sql, asked)}
    now = datetime.now(UTC)
    await insert_many(conn, ReviewQueueItem, [
        {"observation_id": e.observation_id, **e.copied(), "expert_only": False,
         "round": rounds.get(e.observation_id, 0) + 1, "claimed_by_id": None,
         "lease_expires_ms": 0, "entered_at": now}
        for e in entering
    ])
    moved = []
    for e in entries:
        item = items.get(e.observation_id)
        if e.waiting and item is not None and any(item[k] != v for k, v in e.copied().items()):
            moved.append({"id": item["id"], **e.copied()})
    await update_many(conn, ReviewQueueItem, "id", moved)


def _candidates_sql(sql: Sql, scope: Scope, project_id: int, expert_only: bool,
                    flt: QueueFilter, limit: int, skip: tuple[str, ...], lock: bool) -> str:
    me = scope.reviewer_id
    where = [
        f"q.project_id = {sql(project_id)}",
        f"q.expert_only = {sql(expert_only)}",
        f"q.observer_id <> {sql(me)}",
        f"(q.claimed_by_id IS NULL OR q.lease_expires_ms < {sql(now_ms())} "
        f"OR q.claimed_by_id = {sql(me)})",
        "NOT EXISTS (SELECT 1 FROM review_decisions d WHERE d.observation_id = q.observation_id"
        f" AND d.reviewer_id = {sql(me)} AND d.round = q.round)",
        # A deleted record's item is removed lazily, when someone tries to decide it.
        # A scalar subquery, not NOT EXISTS: PostgreSQL would turn that into a hash
        # anti-join over every observation (150 ms at 1M rows) instead of one
        # primary-key lookup per candidate.
        "(SELECT o.is_deleted FROM observations o WHERE o.id = q.observation_id) = "
        f"{sql(False)}",
    ]
    if flt.taxon_id is not None:
        where.append(f"q.taxon_id = {sql(flt.taxon_id)}")
    if flt.phenophase_id is not None:
        where.append(f"q.phenophase_id = {sql(flt.phenophase_id)}")
    if flt.flag is not None:
        where.append("EXISTS (SELECT 1 FROM quality_flags f WHERE f.observation_id = "
                     f"q.observation_id AND f.code = {sql(flt.flag)})")
    if skip:
        where.append(f"q.observation_id NOT IN ({sql.many(list(skip))})")
    return (
        "SELECT q.observation_id, q.flag_order, q.created_seq, q.expert_only "
        "FROM review_queue q WHERE " + " AND ".join(where)
        + f" ORDER BY q.flag_order, q.created_seq LIMIT {int(limit)}"
        + (" FOR UPDATE SKIP LOCKED" if lock else "")
    )


async def _candidates(conn: BaseDBAsyncClient, scope: Scope, flt: QueueFilter, limit: int,
                      skip: tuple[str, ...], lock: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for project_id in scope.projects:
        tiers = (True, False) if project_id in scope.expert_projects else (False,)
        for expert_only in tiers:
            sql = Sql(conn)
            query = _candidates_sql(sql, scope, project_id, expert_only, flt, limit, skip, lock)
            rows += await conn.execute_query_dict(query, sql.values)
    # Escalated items first (experts only see them), then most flags, then oldest.
    rows.sort(key=lambda r: (not r["expert_only"], r["flag_order"], r["created_seq"]))
    return rows[:limit]


async def peek(conn: BaseDBAsyncClient, scope: Scope, flt: QueueFilter, limit: int,
               skip: tuple[str, ...] = ()) -> list[str]:
    """The ids a claim would take now, without claiming them."""
    rows = await _candidates(conn, scope, flt, limit, skip, lock=False)
    return [r["observation_id"] for r in rows]


async def claim(conn: BaseDBAsyncClient, scope: Scope, flt: QueueFilter, limit: int,
                lease_ms: int, skip: tuple[str, ...] = ()) -> tuple[list[str], int]:
    """Claim up to ``limit`` items; return their ids and the lease's end (epoch ms).

    ``conn`` must be a transaction on PostgreSQL (the row locks last until
    commit) and may be the plain connection on SQLite.
    """
    me = scope.reviewer_id
    until = now_ms() + lease_ms
    taken: list[str] = []
    for _ in range(CLAIM_ATTEMPTS):
        want = limit - len(taken)
        rows = await _candidates(conn, scope, flt, want, (*skip, *taken),
                                 lock=conn.capabilities.dialect == "postgres")
        if not rows:
            break
        for row in rows:
            sql = Sql(conn)
            count, _ = await conn.execute_query(
                f"UPDATE review_queue SET claimed_by_id = {sql(me)}, lease_expires_ms = "
                f"{sql(until)} WHERE observation_id = {sql(row['observation_id'])} AND "
                f"(claimed_by_id IS NULL OR lease_expires_ms < {sql(now_ms())} OR "
                f"claimed_by_id = {sql(me)})",
                sql.values,
            )
            if count:
                taken.append(row["observation_id"])
        if len(taken) >= limit:
            break
    return taken, until


async def claim_ids(conn: BaseDBAsyncClient, reviewer_id: int, ids: list[str],
                    lease_ms: int) -> tuple[list[str], int]:
    """Claim these items where they are free (or already ours)."""
    until = now_ms() + lease_ms
    taken = []
    for oid in ids:
        sql = Sql(conn)
        count, _ = await conn.execute_query(
            f"UPDATE review_queue SET claimed_by_id = {sql(reviewer_id)}, lease_expires_ms = "
            f"{sql(until)} WHERE observation_id = {sql(oid)} AND observer_id <> "
            f"{sql(reviewer_id)} AND (claimed_by_id IS NULL OR lease_expires_ms < "
            f"{sql(now_ms())} OR claimed_by_id = {sql(reviewer_id)})",
            sql.values,
        )
        if count:
            taken.append(oid)
    return taken, until


async def release(conn: BaseDBAsyncClient, reviewer_id: int, observation_id: str) -> bool:
    """Give an item back (skip); True when this reviewer held it."""
    count = await ReviewQueueItem.filter(
        observation_id=observation_id, claimed_by_id=reviewer_id
    ).using_db(conn).update(claimed_by_id=None, lease_expires_ms=0)
    return bool(count)

"""Review queue benchmark: next-item latency and decision throughput.

With ``--stored`` observations stored (default 1M) and ``--queue`` of them
waiting for review (default 100k), measures:
- next item: a reviewer claims the next item (p50, p95), first with a tenth
  of the queue (10k), then with all of it (100k);
- decisions: claim + verify (with consensus, audit trail and sync number)
  per second.
Prints each figure as a ratio to its goal: p95 against 20 ms, and p95 at the
full queue against p95 at a tenth of it (goal: within 1.5x).

Runs on SQLite, and on PostgreSQL too when PHENOSYNC_BENCH_POSTGRES_URL or
PHENOSYNC_TEST_POSTGRES_URL is set (a scratch database is created and dropped).

    .venv/bin/python bench/review_bench.py [--stored N] [--queue N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tortoise.backends.base.executor import EXECUTOR_CACHE  # noqa: E402
from tortoise.transactions import in_transaction  # noqa: E402

from schemas.observation import Decision  # noqa: E402
from schemas.roles import ProjectRole  # noqa: E402
from server.database import Database  # noqa: E402
from server.models.accounts import Membership, User  # noqa: E402
from server.models.reference import Phenophase, Project, Taxon  # noqa: E402
from server.review import queue  # noqa: E402
from server.review.decisions import DecisionRequest, decide  # noqa: E402
from server.vocabulary import load_vocabulary  # noqa: E402

GOAL_P95_MS = 20.0
GOAL_GROWTH = 1.5
LEASE_MS = 10 * 60_000
BATCH = 50_000
COLUMNS = (
    "id", "user_id", "project_id", "taxon_id", "phenophase_id", "status", "intensity",
    "observed_at", "observed_utc_offset_min", "latitude", "longitude",
    "coordinate_uncertainty_m", "geoprivacy", "notes", "license", "review_status",
    "flag_count", "server_created_at", "server_updated_at", "client_revision",
    "client_changed_seq", "created_seq", "updated_seq", "is_deleted",
)
QUEUE_COLUMNS = ("observation_id", "project_id", "taxon_id", "phenophase_id", "observer_id",
                 "flag_order", "created_seq", "expert_only", "round", "lease_expires_ms",
                 "entered_at")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Loader:
    """Bulk rows: executemany on SQLite, COPY on PostgreSQL."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.postgres = database.dialect == "postgres"

    def ts(self, value: datetime) -> Any:
        return value if self.postgres else value.isoformat(sep=" ")

    async def insert(self, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
                     ) -> None:
        conn = self.database.connection()
        if self.postgres:
            async with conn.acquire_connection() as raw:  # type: ignore[attr-defined]
                await raw.copy_records_to_table(table, records=rows, columns=list(columns))
            return
        marks = ", ".join("?" for _ in columns)
        names = ", ".join(f'"{c}"' for c in columns)
        await conn.execute_many(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', rows)


async def setup(database: Database, stored: int, queued: int) -> dict[str, Any]:
    await load_vocabulary()
    project = await Project.create(slug="bench", name="Bench", agreements_required=1)
    observer = await User.create(username="observer", password_hash="x")
    reviewer = await User.create(username="reviewer", password_hash="x")
    other = await User.create(username="other", password_hash="x")
    for user, role in ((observer, ProjectRole.VOLUNTEER), (reviewer, ProjectRole.REVIEWER),
                       (other, ProjectRole.REVIEWER)):
        await Membership.create(user=user, project=project, role=role)
    pairs = [(t.id, p.id) for t in await Taxon.all() for p in await Phenophase.all()
             if p.applies_to(t)]
    loader = Loader(database)
    start = datetime(2022, 1, 1, tzinfo=UTC)
    now = loader.ts(datetime.now(UTC))
    queue_rows: list[tuple[Any, ...]] = []
    began = time.perf_counter()
    for first in range(0, stored, BATCH):
        rows = []
        for n in range(first, min(stored, first + BATCH)):
            taxon_id, phase_id = pairs[n % len(pairs)]
            waiting = n % (stored // queued) == 0 and len(queue_rows) < queued
            flags = (n // 7) % 3 if waiting else 0
            oid = str(uuid.UUID(int=n + 1))
            seq = n + 1
            rows.append((
                oid, observer.id, project.id, taxon_id, phase_id, "yes", None,
                loader.ts(start + timedelta(minutes=n)), 60, 52.0, 5.0, 10.0, "open", "",
                "CC-BY-4.0", "needs_review" if waiting else "auto_accepted", flags, now, now,
                1, seq, seq, seq, False,
            ))
            if waiting:
                queue_rows.append((oid, project.id, taxon_id, phase_id, observer.id, -flags,
                                   seq, False, 1, 0, now))
        await loader.insert("observations", COLUMNS, rows)
    print(f"  loaded {stored:,} observations in {time.perf_counter() - began:.0f} s",
          flush=True)
    return {"project": project, "reviewer": reviewer, "other": other, "loader": loader,
            "queue_rows": queue_rows}


async def claim(database: Database, scope: queue.Scope, limit: int = 1) -> list[str]:
    if database.dialect == "postgres":
        async with in_transaction() as conn:
            ids, _ = await queue.claim(conn, scope, queue.QueueFilter(), limit, LEASE_MS)
            return ids
    ids, _ = await queue.claim(database.connection(), scope, queue.QueueFilter(), limit,
                               LEASE_MS)
    return ids


async def next_item_latency(database: Database, scope: queue.Scope, rounds: int
                            ) -> tuple[float, float]:
    conn = database.connection()
    times = []
    for n in range(rounds + 20):
        began = time.perf_counter()
        ids = await claim(database, scope)
        elapsed = (time.perf_counter() - began) * 1000
        assert ids, "the queue ran dry"
        await queue.release(conn, scope.reviewer_id, ids[0])
        if n >= 20:  # warm-up
            times.append(elapsed)
    return statistics.median(times), percentile(times, 0.95)


async def analyze(database: Database) -> None:
    conn = database.connection()
    await conn.execute_script("ANALYZE")


async def run(url: str, label: str, stored: int, queued: int, rounds: int,
              decisions: int) -> None:
    print(f"\n== {label}: {stored:,} stored observations, {queued:,} in the queue ==",
          flush=True)
    # Tortoise caches INSERT statements per connection name, not per dialect.
    EXECUTOR_CACHE.clear()
    database = Database(url)
    await database.open()
    try:
        with database.context:
            await database.migrate()
            world = await setup(database, stored, queued)
            project, reviewer, other = world["project"], world["reviewer"], world["other"]
            rows, loader = world["queue_rows"], world["loader"]
            scope = queue.Scope(reviewer.id, (project.id,), frozenset())
            other_scope = queue.Scope(other.id, (project.id,), frozenset())
            tenth = len(rows) // 10
            await loader.insert("review_queue", QUEUE_COLUMNS, rows[:tenth])
            await analyze(database)
            await claim(database, other_scope, limit=20)  # another reviewer holds the head
            small = await next_item_latency(database, scope, rounds)
            await loader.insert("review_queue", QUEUE_COLUMNS, rows[tenth:])
            await analyze(database)
            large = await next_item_latency(database, scope, rounds)
            began = time.perf_counter()
            for _ in range(decisions):
                (oid,) = await claim(database, scope)
                await decide(reviewer, DecisionRequest(oid, Decision.VERIFY),
                             lease_ms=LEASE_MS)
            rate = decisions / (time.perf_counter() - began)
    finally:
        await database.close()
    print(f"  next item, {tenth:,} queued:  p50 {small[0]:.2f} ms, p95 {small[1]:.2f} ms")
    print(f"  next item, {len(rows):,} queued: p50 {large[0]:.2f} ms, p95 {large[1]:.2f} ms")
    print(f"  p95 / {GOAL_P95_MS:.0f} ms goal: {large[1] / GOAL_P95_MS:.3f}"
          f" ({'OK' if large[1] <= GOAL_P95_MS else 'OVER'})")
    growth = large[1] / small[1]
    print(f"  p95 at {len(rows):,} / p95 at {tenth:,}: {growth:.2f}x (goal <= {GOAL_GROWTH}x:"
          f" {'OK' if growth <= GOAL_GROWTH else 'OVER'})")
    print(f"  decisions (claim + verify, consensus, audit, sync number): {rate:.0f}/s")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", type=int, default=1_000_000)
    parser.add_argument("--queue", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--decisions", type=int, default=300)
    parser.add_argument("--postgres-only", action="store_true")
    args = parser.parse_args()
    if not args.postgres_only:
        with tempfile.TemporaryDirectory() as tmp:
            await run(f"sqlite://{tmp}/bench.sqlite3", "SQLite", args.stored, args.queue,
                      args.rounds, args.decisions)
    pg = os.environ.get("PHENOSYNC_BENCH_POSTGRES_URL") or os.environ.get(
        "PHENOSYNC_TEST_POSTGRES_URL")
    if not pg:
        print("\n(PostgreSQL skipped: set PHENOSYNC_BENCH_POSTGRES_URL)")
        return
    name = f"phenosync_bench_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(pg.replace("postgres://", "postgresql://", 1))
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        await run(f"{pg.rpartition('/')[0]}/{name}", "PostgreSQL", args.stored, args.queue,
                  args.rounds, args.decisions)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())

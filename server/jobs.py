"""Durable background jobs: a table, claimed with a lease, run by workers in
the app's lifespan.

Work that must survive a crash (processing a photo, later publishing a
dataset) is a row in ``jobs`` written in the same transaction as the change
that needs it.  A worker claims one due job with one statement —
``SELECT … FOR UPDATE SKIP LOCKED`` inside an ``UPDATE`` on PostgreSQL, a
single ``UPDATE … WHERE id = (SELECT …)`` on SQLite, whose writers take turns —
and holds it with a lease it renews while the handler runs.  A worker that dies
stops renewing; when the lease runs out another worker claims the job again.
Handlers must therefore be idempotent.  A handler that raises is retried with
exponential backoff up to ``max_attempts``; then the job is ``failed``.  Every
claim counts as an attempt, but a job whose worker died (its lease ran out) is
claimed again for up to ``CRASH_RECLAIMS`` more attempts: a server killed
several times during a long job must not leave it stuck, while a job that
kills its worker every time still stops.

Any number of processes may run workers against one database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from server.database import Database
from server.models.jobs import Job, JobState
from server.models.rows import insert_statement

log = logging.getLogger("phenosync.jobs")

Handler = Callable[[dict[str, Any]], Awaitable[None]]
Periodic = Callable[[], Awaitable[object]]

LEASE_MS = 60_000
POLL_SECONDS = 1.0
MAX_BACKOFF_MS = 15 * 60_000
CRASH_RECLAIMS = 20


def now_ms() -> int:
    return int(time.time() * 1000)


async def enqueue(
    kind: str,
    payload: dict[str, Any],
    *,
    delay_s: float = 0,
    max_attempts: int = 5,
    using_db: BaseDBAsyncClient | None = None,
) -> Job:
    """Add a job; call inside the transaction of the change that needs it."""
    return await Job.create(
        kind=kind,
        payload=payload,
        run_after=now_ms() + int(delay_s * 1000),
        max_attempts=max_attempts,
        using_db=using_db,
    )


def enqueue_step(
    conn: BaseDBAsyncClient, kind: str, payload: dict[str, Any], *, max_attempts: int = 5
) -> tuple[str, list[Any]]:
    """``enqueue`` (due now) as a step of a ``database.run_steps`` transaction."""
    now = datetime.now(UTC)
    return insert_statement(conn, Job, {
        "kind": kind, "payload": payload, "state": JobState.QUEUED.value, "attempts": 0,
        "max_attempts": max_attempts, "run_after": now_ms(), "locked_until": 0,
        "locked_by": None, "last_error": None, "created_at": now, "updated_at": now,
    })


async def run_now(job_id: int) -> None:
    """Make a queued job due at once (it was queued with a delay as a safety net)."""
    await Job.filter(id=job_id, state=JobState.QUEUED).update(run_after=now_ms())


def _claim_sql(dialect: str) -> str:
    if dialect == "postgres":
        return (
            "UPDATE jobs SET state = 'running', attempts = attempts + 1,"
            " locked_until = $1, locked_by = $2"
            " WHERE id = (SELECT id FROM jobs"
            "  WHERE (state = 'queued' AND run_after <= $3 AND attempts < max_attempts)"
            f"   OR (state = 'running' AND locked_until < $3"
            f"       AND attempts < max_attempts + {CRASH_RECLAIMS})"
            "  ORDER BY run_after, id LIMIT 1 FOR UPDATE SKIP LOCKED)"
            " RETURNING id"
        )
    return (
        "UPDATE jobs SET state = 'running', attempts = attempts + 1,"
        " locked_until = ?, locked_by = ?"
        " WHERE id = (SELECT id FROM jobs"
        "  WHERE (state = 'queued' AND run_after <= ? AND attempts < max_attempts)"
        f"   OR (state = 'running' AND locked_until < ?"
        f"       AND attempts < max_attempts + {CRASH_RECLAIMS})"
        "  ORDER BY run_after, id LIMIT 1)"
        " RETURNING id"
    )


async def claim(database: Database, worker: str, lease_ms: int = LEASE_MS) -> Job | None:
    """Claim the next due job (or one whose lease ran out) for ``worker``."""
    now = now_ms()
    params: list[Any] = [now + lease_ms, worker, now]
    if database.dialect != "postgres":
        params.append(now)
    rows = await database.connection().execute_query_dict(_claim_sql(database.dialect), params)
    if not rows:
        return None
    return await Job.get(id=rows[0]["id"])


async def _renew(job: Job, worker: str, lease_ms: int) -> None:
    while True:
        await asyncio.sleep(lease_ms / 3000)
        await Job.filter(id=job.id, locked_by=worker, state=JobState.RUNNING).update(
            locked_until=now_ms() + lease_ms
        )


async def execute(
    job: Job, handlers: Mapping[str, Handler], worker: str, lease_ms: int = LEASE_MS
) -> None:
    """Run a claimed job's handler and record the outcome (only while we hold it)."""
    mine = Job.filter(id=job.id, locked_by=worker, state=JobState.RUNNING)
    handler = handlers.get(job.kind)
    if handler is None:
        await mine.update(state=JobState.FAILED, last_error=f"no handler for {job.kind!r}")
        return
    renewer = asyncio.create_task(_renew(job, worker, lease_ms))
    try:
        await handler(dict(job.payload))
    except Exception as exc:
        log.exception("job %s (%s) failed, attempt %s", job.id, job.kind, job.attempts)
        error = f"{type(exc).__name__}: {exc}"[:2000]
        if job.attempts >= job.max_attempts:
            await mine.update(state=JobState.FAILED, last_error=error, locked_by=None)
        else:
            backoff = min(MAX_BACKOFF_MS, 1000 * 2 ** job.attempts)
            await mine.update(
                state=JobState.QUEUED, last_error=error, locked_by=None,
                run_after=now_ms() + backoff,
            )
    else:
        await mine.update(state=JobState.DONE, locked_by=None)
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer


async def drain(database: Database, handlers: Mapping[str, Handler]) -> int:
    """Run due jobs until none is left; returns how many ran (tests, CLI)."""
    worker = f"drain-{os.getpid()}-{secrets.token_hex(3)}"
    count = 0
    while (job := await claim(database, worker)) is not None:
        await execute(job, handlers, worker)
        count += 1
    return count


@dataclass
class JobRunner:
    """The workers (and periodic chores) of one server process."""

    database: Database
    handlers: Mapping[str, Handler]
    workers: int = 2
    periodic: list[tuple[float, Periodic]] = field(default_factory=list)
    poll_seconds: float = POLL_SECONDS
    lease_ms: int = LEASE_MS
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        """A job was queued in this process: wake an idle worker now."""
        self._wake.set()

    def start(self) -> None:
        with self.database.current():
            for n in range(self.workers):
                name = f"{os.getpid()}-{n}-{secrets.token_hex(3)}"
                self._tasks.append(asyncio.create_task(self._work(name)))
            if self.workers:
                for interval, chore in self.periodic:
                    self._tasks.append(asyncio.create_task(self._every(interval, chore)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _work(self, name: str) -> None:
        while True:
            try:
                job = await claim(self.database, name, self.lease_ms)
            except Exception:  # database away or not migrated yet: try later
                log.exception("claiming a job failed")
                job = None
            if job is not None:
                await execute(job, self.handlers, name, self.lease_ms)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)

    async def _every(self, interval: float, chore: Periodic) -> None:
        while True:
            try:
                await chore()
            except Exception:
                log.exception("periodic chore failed")
            await asyncio.sleep(interval)


async def sweep_dead_jobs(database: Database) -> None:
    """Jobs whose last lease ran out with no reclaims left are marked failed."""
    await database.connection().execute_query(
        "UPDATE jobs SET state = 'failed', last_error = 'lease ran out on the last attempt'"
        f" WHERE state = 'running' AND locked_until < {now_ms()}"
        f" AND attempts >= max_attempts + {CRASH_RECLAIMS}"
    )

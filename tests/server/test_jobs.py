from __future__ import annotations

import asyncio
from typing import Any

from starlette.applications import Starlette

from server import jobs
from server.models.jobs import Job, JobState


async def test_a_job_runs_once_and_is_done(db: Starlette) -> None:
    seen: list[dict[str, Any]] = []

    async def handler(payload: dict[str, Any]) -> None:
        seen.append(payload)

    job = await jobs.enqueue("test.echo", {"n": 1})
    assert await jobs.drain(db.state.database, {"test.echo": handler}) == 1
    assert seen == [{"n": 1}]
    assert (await Job.get(id=job.id)).state == JobState.DONE
    assert await jobs.drain(db.state.database, {"test.echo": handler}) == 0


async def test_a_delayed_job_waits_until_it_is_due(db: Starlette) -> None:
    job = await jobs.enqueue("test.noop", {}, delay_s=60)
    assert await jobs.claim(db.state.database, "w") is None
    await jobs.run_now(job.id)
    claimed = await jobs.claim(db.state.database, "w")
    assert claimed is not None and claimed.id == job.id


async def test_a_failing_job_is_retried_with_backoff_then_failed(db: Starlette) -> None:
    async def broken(payload: dict[str, Any]) -> None:
        raise RuntimeError("disk on fire")

    job = await jobs.enqueue("test.broken", {}, max_attempts=2)
    await jobs.drain(db.state.database, {"test.broken": broken})
    again = await Job.get(id=job.id)
    assert again.state == JobState.QUEUED and again.attempts == 1
    assert again.run_after > jobs.now_ms() and "disk on fire" in (again.last_error or "")
    await jobs.run_now(job.id)
    await jobs.drain(db.state.database, {"test.broken": broken})
    assert (await Job.get(id=job.id)).state == JobState.FAILED


async def test_a_job_whose_worker_died_is_claimed_again_after_its_lease(db: Starlette) -> None:
    job = await jobs.enqueue("test.noop", {})
    first = await jobs.claim(db.state.database, "crashed-worker")
    assert first is not None and first.id == job.id
    # The worker dies: no renewals.  While the lease holds nobody else gets it.
    assert await jobs.claim(db.state.database, "other") is None
    await Job.filter(id=job.id).update(locked_until=jobs.now_ms() - 1)
    ran: list[int] = []

    async def handler(payload: dict[str, Any]) -> None:
        ran.append(1)

    assert await jobs.drain(db.state.database, {"test.noop": handler}) == 1
    done = await Job.get(id=job.id)
    assert (done.state, done.attempts, ran) == (JobState.DONE, 2, [1])


async def test_concurrent_claims_never_share_a_job(db: Starlette) -> None:
    for n in range(8):
        await jobs.enqueue("test.noop", {"n": n})
    claimed = await asyncio.gather(
        *(jobs.claim(db.state.database, f"w{n}") for n in range(12))
    )
    ids = [job.id for job in claimed if job is not None]
    assert len(ids) == 8 == len(set(ids))


async def test_workers_in_the_lifespan_pick_up_jobs(db: Starlette) -> None:
    done = asyncio.Event()

    async def handler(payload: dict[str, Any]) -> None:
        done.set()

    runner = jobs.JobRunner(db.state.database, {"test.wake": handler}, workers=2,
                            poll_seconds=0.05)
    runner.start()
    try:
        await jobs.enqueue("test.wake", {})
        runner.notify()
        await asyncio.wait_for(done.wait(), 5)
    finally:
        await runner.stop()


async def test_a_job_whose_worker_died_is_claimed_again_past_max_attempts(
    db: Starlette,
) -> None:
    """A server killed during a long job more often than max_attempts: the job
    still runs again (a crash is not the handler's failure), up to a cap."""
    job = await jobs.enqueue("test.noop", {}, max_attempts=1)
    for n in range(1 + jobs.CRASH_RECLAIMS):
        await jobs.sweep_dead_jobs(db.state.database)
        assert await jobs.claim(db.state.database, f"dies-{n}") is not None, n
        await Job.filter(id=job.id).update(locked_until=jobs.now_ms() - 1)
    assert await jobs.claim(db.state.database, "other") is None
    await jobs.sweep_dead_jobs(db.state.database)
    assert (await Job.get(id=job.id)).state == JobState.FAILED


async def test_dead_jobs_with_no_attempts_left_are_marked_failed(db: Starlette) -> None:
    job = await jobs.enqueue("test.noop", {}, max_attempts=1)
    await Job.filter(id=job.id).update(attempts=1 + jobs.CRASH_RECLAIMS, state=JobState.RUNNING,
                                       locked_until=jobs.now_ms() - 1)
    assert await jobs.claim(db.state.database, "other") is None
    await jobs.sweep_dead_jobs(db.state.database)
    assert (await Job.get(id=job.id)).state == JobState.FAILED

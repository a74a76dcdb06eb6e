"""Durable background jobs (see ``server/jobs.py``).

Times are epoch milliseconds, compared in SQL the same way on SQLite and
PostgreSQL.  A job is ``queued`` until a worker claims it with a lease
(``running`` until ``locked_until``); a lease that runs out (a crashed
worker) makes the job claimable again.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.models import Model


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Job(Model):
    id = fields.BigIntField(primary_key=True)
    kind = fields.CharField(max_length=64)
    payload: fields.Field[dict[str, Any]] = fields.JSONField(default=dict)
    state = fields.CharEnumField(JobState, max_length=16, default=JobState.QUEUED)
    attempts = fields.IntField(default=0)
    max_attempts = fields.IntField(default=5)
    # Epoch ms: not before this; and the lease of the worker running it.
    run_after = fields.BigIntField(default=0)
    locked_until = fields.BigIntField(default=0)
    locked_by = fields.CharField(max_length=64, null=True)
    last_error = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "jobs"
        indexes = (("state", "run_after"),)

"""What a quality check is: a stable code, a title and an explanation for
people, and a function that looks at one observation and may find a problem.

Checks run on a batch (a sync push of 500 records, a re-check): ``run`` is a
plain function of one observation and the batch's context, and a check that
needs the database has a ``prepare`` that loads what it needs for the whole
batch with one query, into the context, before any ``run``.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from server.models.reference import Phenophase, Project, Taxon


@dataclass(frozen=True)
class Finding:
    code: str
    message: str
    details: dict[str, Any] | None = None


@dataclass
class Subject:
    """An observation as the checks see it: its stored (or about to be stored)
    values and its project, taxon and phenophase."""

    id: str
    user_id: int
    project: Project
    taxon: Taxon
    phenophase: Phenophase
    status: str
    intensity: str | None
    observed_at: datetime  # UTC
    observed_utc_offset_min: int
    latitude: float
    longitude: float
    coordinate_uncertainty_m: float | None
    client_created_at: datetime | None
    server_created_at: datetime | None
    review_status: str
    flag_count: int

    @property
    def taxon_id(self) -> int:
        return int(self.taxon.id)

    @property
    def phenophase_id(self) -> int:
        return int(self.phenophase.id)


@dataclass
class CheckContext:
    """Shared by the checks of one run: the connection, the time, caches."""

    conn: BaseDBAsyncClient
    now: datetime
    # (taxon id, phenophase id) -> day-of-year sample of verified observations
    season_samples: dict[tuple[int, int], list[float]] = field(default_factory=dict)
    # (taxon id, phenophase id) -> the season learned from that sample
    seasons: dict[tuple[int, int], Any] = field(default_factory=dict)
    # observation id -> stored observations of the opposite status that may
    # conflict with it (same observer, taxon and phenophase, around that day)
    status_candidates: dict[str, list[Any]] = field(default_factory=dict)
    # Other observations a finding involves (conflicting status): re-checked too.
    partners: set[str] = field(default_factory=set)


Run = Callable[[Subject, CheckContext], Finding | None]
Prepare = Callable[[list[Subject], CheckContext], Awaitable[None]]


@dataclass(frozen=True)
class Check:
    code: str
    title: str
    explanation: str
    # None for checks whose flags another part writes (photo processing).
    run: Run | None = None
    # Loads what ``run`` needs from the database, once per batch.
    prepare: Prepare | None = None


def local_time(observation: Any) -> datetime:
    """The observer's wall-clock time (observed_at is stored in UTC)."""
    return observation.observed_at + timedelta(minutes=observation.observed_utc_offset_min)


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine, mean Earth radius)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(min(1.0, math.sqrt(a)))

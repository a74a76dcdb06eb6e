"""Quality flags: reasons to doubt an observation, written by automatic checks.

A flag has a stable code (``schemas``-level vocabulary for reviewers and the
published dataset) and a message a person can read.  ``raise_flags`` keeps
``Observation.flag_count`` equal to the number of flags and gives the
observation a new sync number when its flags change, so devices pull them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from server.models.observations import Observation, QualityFlag
from server.models.sequence import next_seq

PHOTO_EXIF_TIME_MISMATCH = "photo_exif_time_mismatch"
PHOTO_EXIF_LOCATION_MISMATCH = "photo_exif_location_mismatch"
PHOTO_DUPLICATE = "photo_duplicate"


@dataclass
class Flag:
    code: str
    message: str
    details: dict[str, Any]


async def raise_flags(
    observation_id: str, flags: list[Flag], conn: BaseDBAsyncClient
) -> list[str]:
    """Add the flags the observation does not have yet (one per code); returns
    the codes added.  Call inside a transaction."""
    if not flags:
        return []
    existing: set[str] = {
        str(code)
        for code in await QualityFlag.filter(observation_id=observation_id)
        .using_db(conn)
        .values_list("code", flat=True)
    }
    added = []
    for flag in flags:
        if flag.code in existing:
            continue
        await QualityFlag.create(
            observation_id=observation_id, code=flag.code, message=flag.message,
            details=flag.details, using_db=conn,
        )
        existing.add(flag.code)
        added.append(flag.code)
    if added:
        seq = await next_seq(conn)
        await Observation.filter(id=observation_id).using_db(conn).update(
            flag_count=len(existing), updated_seq=seq
        )
    return added


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine, mean Earth radius)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(min(1.0, math.sqrt(a)))

"""The photo checks.  Their flags are raised by photo processing (EXIF and
perceptual hashes are known only once a photo is uploaded and processed);
they are listed here so that the queue and the reviewer page explain them,
and ``run_checks`` leaves them alone but counts them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from server.models.observations import QualityFlag
from server.quality.check import Check

EXIF_TIME = Check(
    "photo_exif_time_mismatch",
    "Photo taken at another time",
    "The time stored in the photo (EXIF) is far from the stated observation time. The photo "
    "may be from another day or year; compare the season shown in the photo.",
)
EXIF_LOCATION = Check(
    "photo_exif_location_mismatch",
    "Photo taken at another place",
    "The GPS position stored in the photo (EXIF) is far from the stated location. The "
    "record's coordinates or the photo may belong to another site.",
)
DUPLICATE = Check(
    "photo_duplicate",
    "Photo used before",
    "The same (or a nearly identical) photo is attached to another observation. A photo "
    "shows one moment: one of the records may be a copy.",
)

PHOTO_EXIF_TIME_MISMATCH = EXIF_TIME.code
PHOTO_EXIF_LOCATION_MISMATCH = EXIF_LOCATION.code
PHOTO_DUPLICATE = DUPLICATE.code


@dataclass
class Flag:
    code: str
    message: str
    details: dict[str, Any]


async def raise_flags(
    observation_id: str, flags: list[Flag], conn: BaseDBAsyncClient
) -> list[str]:
    """Add the flags the observation does not have yet (one per code); returns
    the codes added.  Call inside a transaction.  The runner then recounts the
    flags and moves the review state (an auto-accepted record with a new flag
    goes to review), with a new sync number so the device pulls it."""
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
        # Imported here: the runner's registry imports this module.
        from server.quality.runner import run_checks

        await run_checks([observation_id], conn, edited=False)
    return added

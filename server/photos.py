"""Photos after upload: the durable processing job, the quality checks it runs,
and the photo record as devices and the API see it.

``process_upload`` is the handler of the ``photo.process`` job.  It is
idempotent: a worker that dies half-way leaves the upload's bytes where they
were and the job is claimed again.  Derivatives and originals are keyed by the
content's sha256, so identical content is stored once.
"""

from __future__ import annotations

import logging
from datetime import timedelta, timezone
from typing import Any

from anyio import to_thread
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from schemas.observation import UploadState
from server import images
from server.models.observations import Observation, Photo
from server.models.sequence import next_seq
from server.models.uploads import Upload, UploadStatus
from server.quality.check import distance_m
from server.quality.photos import (
    PHOTO_DUPLICATE,
    PHOTO_EXIF_LOCATION_MISMATCH,
    PHOTO_EXIF_TIME_MISMATCH,
    Flag,
    raise_flags,
)
from server.storage import Storage

log = logging.getLogger("phenosync.photos")

JOB_KIND = "photo.process"
MAX_TIME_GAP = timedelta(days=1)
MAX_DISTANCE_M = 5000.0
# dHash bits that may differ for two files to count as the same picture.
NEAR_DUPLICATE_BITS = 3


def original_key(sha256: str) -> str:
    return f"originals/{sha256}"


def derivative_key(sha256: str, size: int) -> str:
    return f"derivatives/{sha256}/{size}.jpg"


def derivative_url(photo_id: str, size: int) -> str:
    return f"/api/v1/photos/{photo_id}/derivatives/{size}"


def photo_record(photo: Photo) -> dict[str, Any]:
    """The photo as it syncs to the device and as ``GET /api/v1/photos/{id}`` shows it.

    Client-owned: id, observation_id, sha256 (as declared), license.  The rest
    is server-owned.  ``exif`` holds the extracted fields, never raw EXIF.
    """
    ready = photo.upload_state == UploadState.READY
    return {
        "id": photo.id,
        "observation_id": photo.observation_id,  # type: ignore[attr-defined]
        "declared_sha256": photo.declared_sha256,
        "license": photo.license,
        "upload_state": str(photo.upload_state),
        "failure_code": photo.failure_code,
        "sha256": photo.sha256 if ready else None,
        "content_type": photo.content_type if ready else None,
        "size_bytes": photo.size_bytes if ready else None,
        "width": photo.width if ready else None,
        "height": photo.height if ready else None,
        "derivatives": (
            {str(size): derivative_url(photo.id, size) for size in photo.derivative_sizes or []}
            if ready
            else {}
        ),
        "original_url": f"/api/v1/photos/{photo.id}/original" if ready else None,
        "exif": photo.exif if ready else None,
        "updated_seq": photo.updated_seq,
    }


async def mark_failed(upload_id: str, code: str, storage: Storage) -> None:
    """Refuse an upload's content: nothing of it stays attached to the photo."""
    async with in_transaction() as conn:
        upload = await Upload.get_or_none(id=upload_id, using_db=conn)
        if upload is None or upload.state not in (UploadStatus.COMPLETE, UploadStatus.RECEIVING):
            return
        await Upload.filter(id=upload_id).using_db(conn).update(state=UploadStatus.FAILED)
        photo = await Photo.get(id=upload.photo_id).using_db(conn)  # type: ignore[attr-defined]
        if photo.upload_state != UploadState.READY:
            seq = await next_seq(conn)
            await Photo.filter(id=photo.id).using_db(conn).update(
                upload_state=UploadState.FAILED, failure_code=code, updated_seq=seq
            )
    await storage.delete(upload.storage_key)


def _process_file(storage: Storage, key: str, max_pixels: int) -> images.Processed:
    with storage.open(key) as handle:
        return images.process(handle, max_pixels)


async def process_upload(payload: dict[str, Any], *, storage: Storage, max_pixels: int) -> None:
    """Job handler: verify, read EXIF, make derivatives, hash, check, attach."""
    upload = await Upload.get_or_none(id=payload["upload_id"])
    if upload is None:
        return  # terminated
    if upload.state in (UploadStatus.PROCESSED, UploadStatus.FAILED):
        # Done by an earlier attempt, whose worker may have died between its
        # commit and deleting the upload's bytes: delete them (again).
        await storage.delete(upload.storage_key)
        return
    if upload.state != UploadStatus.COMPLETE:
        return
    photo = await Photo.get(id=upload.photo_id)  # type: ignore[attr-defined]
    if photo.upload_state == UploadState.READY:
        # Another upload of this photo won; this one is surplus.
        await Upload.filter(id=upload.id).update(state=UploadStatus.PROCESSED)
        await storage.delete(upload.storage_key)
        return
    try:
        done = await to_thread.run_sync(_process_file, storage, upload.storage_key, max_pixels)
    except images.ImageRefused as refused:
        log.info("photo %s refused: %s", photo.id, refused.message)
        await mark_failed(upload.id, refused.code, storage)
        return
    declared = {d for d in (upload.declared_sha256, photo.declared_sha256) if d}
    if declared and declared != {done.sha256}:
        await mark_failed(upload.id, "sha256_mismatch", storage)
        return
    for size, data in done.derivatives.items():
        await storage.put(derivative_key(done.sha256, size), data)
    await storage.copy(upload.storage_key, original_key(done.sha256))
    exif = done.exif
    band0, band1, band2, band3 = images.hash_bands(done.perceptual_hash)
    async with in_transaction() as conn:
        seq = await next_seq(conn)
        await Photo.filter(id=photo.id).using_db(conn).update(
            upload_state=UploadState.READY,
            failure_code=None,
            sha256=done.sha256,
            perceptual_hash=done.perceptual_hash,
            phash_band0=band0, phash_band1=band1, phash_band2=band2, phash_band3=band3,
            storage_key=original_key(done.sha256),
            content_type=done.inspection.content_type,
            size_bytes=done.size_bytes,
            width=done.width,
            height=done.height,
            exif=exif.as_json(),
            exif_taken_at=(
                exif.taken_at if exif.taken_at is None or exif.taken_at.tzinfo else None
            ),
            exif_latitude=exif.latitude,
            exif_longitude=exif.longitude,
            derivative_sizes=sorted(done.derivatives),
            updated_seq=seq,
        )
        await Upload.filter(id=upload.id).using_db(conn).update(state=UploadStatus.PROCESSED)
        observation = await Observation.get(id=photo.observation_id).using_db(conn)  # type: ignore[attr-defined]
        await raise_flags(
            observation.id, await quality_flags(photo, observation, done, conn), conn
        )
    await storage.delete(upload.storage_key)


async def quality_flags(
    photo: Photo, observation: Observation, done: images.Processed, conn: Any
) -> list[Flag]:
    """The photo checks of DESIGN.md: EXIF time and place, reuse in another observation."""
    flags: list[Flag] = []
    exif = done.exif
    if exif.taken_at is not None:
        taken = exif.taken_at
        if taken.tzinfo is None:  # no OffsetTimeOriginal: the observer's clock offset
            offset = timezone(timedelta(minutes=observation.observed_utc_offset_min))
            taken = taken.replace(tzinfo=offset)
        gap = abs(taken - observation.observed_at)
        if gap > MAX_TIME_GAP:
            flags.append(Flag(
                PHOTO_EXIF_TIME_MISMATCH,
                f"Photo {photo.id} was taken {taken.isoformat()}, "
                f"{gap.total_seconds() / 86400:.1f} days from the observation's time.",
                {"photo_id": photo.id, "exif_taken_at": taken.isoformat(),
                 "gap_hours": round(gap.total_seconds() / 3600, 1)},
            ))
    if exif.latitude is not None and exif.longitude is not None:
        distance = distance_m(
            observation.latitude, observation.longitude, exif.latitude, exif.longitude
        )
        if distance > MAX_DISTANCE_M:
            flags.append(Flag(
                PHOTO_EXIF_LOCATION_MISMATCH,
                f"Photo {photo.id} was taken {distance / 1000:.1f} km from the stated position.",
                {"photo_id": photo.id, "distance_m": round(distance),
                 "exif_latitude": exif.latitude, "exif_longitude": exif.longitude},
            ))
    duplicate = await find_duplicate(photo, done, conn)
    if duplicate is not None:
        other, match, bits = duplicate
        flags.append(Flag(
            PHOTO_DUPLICATE,
            f"Photo {photo.id} is the same image as photo {other.id} of observation "
            f"{other.observation_id}"  # type: ignore[attr-defined]
            + (" (identical file)." if match == "exact" else f" (nearly: {bits} bits differ)."),
            {"photo_id": photo.id, "other_photo_id": other.id,
             "other_observation_id": other.observation_id,  # type: ignore[attr-defined]
             "match": match, "distance_bits": bits},
        ))
    return flags


async def find_duplicate(
    photo: Photo, done: images.Processed, conn: Any
) -> tuple[Photo, str, int] | None:
    """A ready photo of *another* observation with the same content or picture."""
    others = Photo.filter(
        upload_state=UploadState.READY, is_deleted=False
    ).exclude(observation_id=photo.observation_id).using_db(conn)  # type: ignore[attr-defined]
    exact = await others.filter(sha256=done.sha256).order_by("server_created_at").first()
    if exact is not None:
        return exact, "exact", 0
    if not 4 < int(done.perceptual_hash, 16).bit_count() < 60:
        return None  # a nearly uniform picture (night, sky): its hash says nothing
    bands = images.hash_bands(done.perceptual_hash)
    candidates = await others.filter(
        Q(phash_band0=bands[0]) | Q(phash_band1=bands[1])
        | Q(phash_band2=bands[2]) | Q(phash_band3=bands[3])
    ).order_by("server_created_at").limit(200)
    for other in candidates:
        if other.perceptual_hash is None:
            continue
        bits = images.hamming(done.perceptual_hash, other.perceptual_hash)
        if bits <= NEAR_DUPLICATE_BITS:
            return other, "perceptual", bits
    return None

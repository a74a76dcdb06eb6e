"""Publishing a release: pick the version, build it in a temporary folder
beside the releases, then in one transaction record it and move it into place
with one rename.

A failed publish leaves nothing behind but its temporary folder's removal; a
release folder never changes after the rename (its files are made read-only
and synced to disk first).  A publish killed between the rename and the commit
leaves a whole folder that no row lists; the next publish of that version
replaces it.  A killed publish's hidden work folder is removed a day later.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import stat
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anyio import to_thread
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from exports.version import VersionError, check_requested, next_version, schema_change
from schemas import errors
from schemas.dataset import SCHEMA_VERSION, TABLES
from server import jobs
from server.database import Database
from server.models.accounts import User
from server.models.jobs import Job, JobState
from server.models.releases import Release
from server.release_source import DatabaseReleaseSource
from server.settings import Settings

if TYPE_CHECKING:
    from exports.release import Progress


WORK_PREFIX = ".tmp-"
STALE_WORK_SECONDS = 24 * 3600


def _quiet(stage: str, rows: int) -> None:
    return None


async def latest_release() -> Release | None:
    return await Release.all().order_by("-id").first()


def release_dir(settings: Settings, release: Release) -> Path:
    return settings.releases_dir / release.path


def _previous_columns(folder: Path) -> dict[str, list[str]]:
    from exports import metadata

    try:
        package = json.loads((folder / "datapackage.json").read_text())
    except FileNotFoundError:
        return {}
    return metadata.table_columns(package)


def _current_columns() -> dict[str, list[str]]:
    return {table: [c.name for c in columns] for table, columns in TABLES.items()}


def _freeze(folder: Path) -> None:
    """Make every file read-only and durable (fsync, and each folder's entries)."""
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for path in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        _fsync_dir(path)


async def plan_version(settings: Settings, requested: str | None) -> tuple[str, list[str]]:
    """The version to publish, and the schema changes since the previous release."""
    previous = await latest_release()
    prev_cols = _previous_columns(release_dir(settings, previous)) if previous else {}
    now = _current_columns()
    change = schema_change(prev_cols, now) if previous else "none"
    notes = []
    for table, columns in prev_cols.items():
        gone = [c for c in columns if c not in now.get(table, [])]
        added = [c for c in now.get(table, []) if c not in columns]
        if gone:
            notes.append(f"{table}: removed columns {', '.join(gone)} (major change).")
        if added:
            notes.append(f"{table}: added columns {', '.join(added)}.")
    before = previous.version if previous else None
    if requested and await Release.exists(version=requested):
        raise errors.AlreadyExists(
            f"Release {requested} exists already and releases never change: choose another "
            "version, or leave it out to take the next one."
        )
    try:
        version = check_requested(requested, before, change) if requested else (
            next_version(before, change)
        )
    except VersionError as exc:
        raise errors.ValidationFailed(str(exc), code="invalid_version") from None
    # A folder without a row is not checked: a publish killed between its
    # rename and its commit left it, and the next publish replaces it.
    if await Release.exists(version=version):
        raise errors.AlreadyExists(
            f"Release {version} exists already and releases never change: choose another "
            "version, or leave it out to take the next one."
        )
    return version, notes


async def publish(
    settings: Settings,
    database: Database,
    *,
    version: str | None = None,
    user: User | None = None,
    progress: Progress = _quiet,
) -> Release:
    # pandas and pyarrow load here, on the first publish, not at every start.
    from exports import metadata
    from exports.privacy import Privacy
    from exports.release import build_release

    chosen, notes = await plan_version(settings, version)
    previous = await latest_release()
    settings.releases_dir.mkdir(parents=True, exist_ok=True)
    created = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    url = f"{settings.public_url}/datasets/{chosen}" if settings.public_url else ""
    prev_dir = release_dir(settings, previous) if previous else None
    info = metadata.ReleaseInfo(
        version=chosen, created=created, url=url, grid_degrees=settings.grid_degrees,
        previous_version=previous.version if previous else None,
        previous_changelog=(prev_dir / "CHANGELOG.md").read_text()
        if prev_dir and (prev_dir / "CHANGELOG.md").exists() else "",
        schema_changes=notes,
    )
    privacy = Privacy(str(settings.secret_key).encode(), settings.grid_degrees)
    source = DatabaseReleaseSource.of(database)
    work = settings.releases_dir / f"{WORK_PREFIX}{chosen}-{secrets.token_hex(4)}"
    final = settings.releases_dir / chosen
    _remove_stale_work(settings.releases_dir)
    try:
        summary = await build_release(
            source, work, info, privacy, previous=prev_dir,
            media_base=settings.public_url, progress=progress,
        )
        await to_thread.run_sync(_freeze, work)
        try:
            async with in_transaction() as conn:
                # The row first: its unique version is the lock.  A concurrent
                # publish of this version waits here until we commit, then fails.
                release = await Release.create(
                    version=chosen, path=chosen, schema_version=SCHEMA_VERSION,
                    observation_count=summary.counts["observations"],
                    media_count=summary.counts["media"],
                    retracted_count=summary.counts["retracted"],
                    years=summary.years, files=summary.files, sha256=summary.sha256sums,
                    citation=metadata.citation_text(info), created_by=user, using_db=conn,
                )
                await to_thread.run_sync(_move_into_place, work, final)
        except IntegrityError:
            raise errors.AlreadyExists(
                f"Release {chosen} was published by someone else meanwhile."
            ) from None
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return release


def _move_into_place(work: Path, final: Path) -> None:
    """One rename: readers see no release or the whole of it.  Runs while the
    release's row is written but not committed, so no other publish of this
    version is under way: a folder already at ``final`` was left by a publish
    that died between its rename and its commit (whole, but never listed),
    and is replaced."""
    if final.exists():
        discarded = final.with_name(f"{WORK_PREFIX}discarded-{final.name}-"
                                    f"{secrets.token_hex(4)}")
        os.rename(final, discarded)
        shutil.rmtree(discarded, ignore_errors=True)
    os.rename(work, final)
    _fsync_dir(final.parent)


def _fsync_dir(folder: Path) -> None:
    """Make renames and new entries in ``folder`` durable (a power cut after an
    acknowledgement must not undo them)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_stale_work(releases: Path) -> None:
    """Work folders of publishes killed mid-way (hidden, never served) are
    removed once they are a day old; younger ones may belong to a publish
    still running in another process."""
    cutoff = time.time() - STALE_WORK_SECONDS
    for folder in releases.glob(WORK_PREFIX + "*"):
        with contextlib.suppress(OSError):
            if folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)


JOB_KIND = "release.publish"


async def publish_job(payload: dict[str, Any], *, settings: Settings, database: Database) -> None:
    """The job behind ``POST /api/v1/datasets``: publish the planned version.

    Idempotent: a retry after the release was recorded does nothing, and so
    does a run that finds the version published meanwhile (a second run of
    this job, when the lease of the first ran out while it was still writing).
    """
    version = str(payload["version"])
    if await Release.exists(version=version):
        return
    user = await User.get_or_none(id=payload["user_id"]) if payload.get("user_id") else None
    try:
        await publish(settings, database, version=version, user=user)
    except errors.AlreadyExists:
        if not await Release.exists(version=version):
            raise


async def queue_publish(settings: Settings, requested: str | None, user: User | None) -> Job:
    """Check the version now (409/422 at once), then queue the publish."""
    if await Job.filter(kind=JOB_KIND, state__in=[JobState.QUEUED, JobState.RUNNING]).exists():
        raise errors.Conflict(
            "A release is being published: wait until it is listed, then publish again.",
            code="publish_in_progress",
        )
    version, _ = await plan_version(settings, requested)
    return await jobs.enqueue(
        JOB_KIND, {"version": version, "user_id": user.id if user else None}, max_attempts=5
    )


def publish_job_dict(job: Job) -> dict[str, Any]:
    return {
        "job": job.id,
        "version": job.payload.get("version"),
        "state": str(job.state),
        "attempts": job.attempts,
        "error": job.last_error if job.state == JobState.FAILED else None,
        "status_url": f"/api/v1/datasets/jobs/{job.id}",
    }


def release_dict(release: Release, *, latest: bool, base: str = "") -> dict[str, Any]:
    prefix = f"{base}/datasets/{release.version}/"
    files = [{**f, "url": prefix + f["path"]} for f in release.files]
    files.append({"path": "SHA256SUMS", "sha256": release.sha256, "url": prefix + "SHA256SUMS"})
    return {
        "version": release.version,
        "created_at": release.created_at.isoformat().replace("+00:00", "Z"),
        "latest": latest,
        "schema_version": release.schema_version,
        "counts": {
            "observations": release.observation_count,
            "media": release.media_count,
            "retracted": release.retracted_count,
        },
        "years": release.years,
        "sha256": release.sha256,
        "citation": release.citation,
        "files": files,
    }

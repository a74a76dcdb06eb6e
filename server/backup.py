"""Backup and restore of the database and the files under the data dir.

A backup is one ``.tar.gz`` holding ``manifest.json``, the database
(SQLite: a consistent copy made with SQLite's online backup API;
PostgreSQL: a ``pg_dump`` custom-format dump), and the ``media/`` and
``releases/`` folders.  It can be taken while the server runs.  Restore
refuses to overwrite a database that holds data unless told to.

Media on S3 (``PHENOSYNC_MEDIA_URL=s3://…``) are read through the storage
interface into the same ``media/<key>`` entries, and restored into the
configured storage whichever it is: a backup of a server with local media
restores into a bucket and the other way round (the way to move media).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from server.settings import Settings
from server.storage import LocalStorage, Storage, storage_for

FORMAT = 1
FOLDERS = ("media", "releases")


class BackupError(Exception):
    pass


def _sqlite_path(url: str) -> Path:
    return Path(url[len("sqlite://"):])


def _pg_url(url: str) -> str:
    return "postgresql://" + url[len("postgres://"):]


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupError(f"{command[0]} failed: {done.stderr.strip()}")


def backup(settings: Settings, target: Path, *, media: bool = True) -> dict[str, Any]:
    """Write a backup archive to ``target``; return its manifest.  Without
    ``media`` the archive has no ``media/`` (copy the bucket with the object
    store's tools), and restoring it leaves the configured media alone."""
    url = settings.database_url
    with tempfile.TemporaryDirectory(dir=settings.data_dir) as tmp:
        work = Path(tmp)
        if url.startswith("sqlite://"):
            db_file = "database.sqlite3"
            source = sqlite3.connect(_sqlite_path(url))
            copy = sqlite3.connect(work / db_file)
            with copy:
                source.backup(copy)
            copy.close()
            source.close()
        else:
            db_file = "database.pgdump"
            _run(["pg_dump", "--format=custom", "--no-owner", "--file", str(work / db_file),
                  _pg_url(url)])
        storage = storage_for(settings)
        local_media = isinstance(storage, LocalStorage)
        folders = [f for f in FOLDERS if (settings.data_dir / f).is_dir()]
        if not local_media and "media" not in folders:
            folders.insert(0, "media")
        if not media:
            folders = [f for f in folders if f != "media"]
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "created_at": datetime.now(UTC).isoformat(),
            "database": "sqlite" if db_file.endswith("sqlite3") else "postgres",
            "database_file": db_file,
            "folders": folders,
            "media_from": "local" if local_media else settings.media_url,
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2))
        partial = target.with_name(target.name + ".partial")
        with tarfile.open(partial, "w:gz") as archive:
            archive.add(work / "manifest.json", "manifest.json")
            archive.add(work / db_file, db_file)
            for folder in manifest["folders"]:
                if folder == "media" and not local_media:
                    _add_objects(archive, storage)
                else:
                    archive.add(settings.data_dir / folder, folder)
        partial.replace(target)  # a crash never leaves a truncated backup behind
    return manifest


def restore(settings: Settings, source: Path, *, force: bool = False,
            database_has_data: bool = False) -> dict[str, Any]:
    """Restore a backup into the configured database and data dir.

    The server must be stopped.  A database that holds data is only
    overwritten with ``force``.
    """
    if database_has_data and not force:
        raise BackupError("The database holds data: restore only with --force.")
    with tempfile.TemporaryDirectory(dir=settings.data_dir) as tmp:
        work = Path(tmp)
        with tarfile.open(source, "r:gz") as archive:
            archive.extractall(work, filter="data")  # no absolute paths, no links out
        manifest = json.loads((work / "manifest.json").read_text())
        if manifest.get("format") != FORMAT:
            raise BackupError(f"Unknown backup format {manifest.get('format')!r}.")
        url = settings.database_url
        kind = "sqlite" if url.startswith("sqlite://") else "postgres"
        if manifest["database"] != kind:
            raise BackupError(
                f"This backup holds a {manifest['database']} database; the configured one "
                f"is {kind}. Restore into a {manifest['database']} database, then migrate "
                "the data with your database's tools."
            )
        db_file = work / manifest["database_file"]
        if kind == "sqlite":
            target = _sqlite_path(url)
            for suffix in ("-wal", "-shm"):
                Path(str(target) + suffix).unlink(missing_ok=True)
            shutil.copyfile(db_file, target)
        else:
            _run(["pg_restore", "--clean", "--if-exists", "--no-owner", "--single-transaction",
                  "--dbname", _pg_url(url), str(db_file)])
        storage = storage_for(settings)
        for folder in manifest["folders"]:
            if folder == "media" and not isinstance(storage, LocalStorage):
                _restore_objects(storage, work / folder)
                continue
            destination = settings.data_dir / folder
            if destination.exists():
                shutil.rmtree(destination)
            shutil.copytree(work / folder, destination)
    return manifest


def _add_objects(archive: tarfile.TarFile, storage: Storage) -> None:
    """Every key of ``storage`` as ``media/<key>``, streamed (never whole in memory)."""
    info = tarfile.TarInfo("media")
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(datetime.now(UTC).timestamp())
    archive.addfile(info)
    for key, _ in sorted(storage.keys()):
        try:
            handle = storage.open(key)
        except FileNotFoundError:
            continue  # deleted since it was listed (a finished upload)
        with handle:
            entry = tarfile.TarInfo(f"media/{key}")
            entry.size = handle.seek(0, 2)  # what the key holds now
            handle.seek(0)
            entry.mode, entry.mtime = 0o600, info.mtime
            archive.addfile(entry, handle)


def _restore_objects(storage: Storage, folder: Path) -> None:
    """Make ``storage`` hold exactly the files below ``folder``."""
    restored: set[str] = set()
    if folder.is_dir():
        for path in sorted(folder.rglob("*")):
            key = path.relative_to(folder).as_posix()
            if path.is_file() and not path.name.startswith("."):
                with path.open("rb") as handle:
                    try:
                        storage.put_file(key, handle)
                    except ValueError:
                        raise BackupError(
                            f"media/{key} in the backup is not a media key of Phenosync: "
                            "is this a Phenosync backup?"
                        ) from None
                restored.add(key)
    for key, _ in list(storage.keys()):
        if key not in restored:
            storage.remove(key)

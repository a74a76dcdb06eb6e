"""Backup and restore, run as an operator runs them: the real CLI."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
from starlette.applications import Starlette

from server.backup import backup
from server.demo import load_demo
from server.models.observations import Observation
from server.settings import Settings
from tests.conftest import POSTGRES_URL
from tests.s3server import S3Server


def phenosync(data_dir: Path, database_url: str, *args: str,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PHENOSYNC_DATA_DIR": str(data_dir),
           "PHENOSYNC_DATABASE_URL": database_url, **(env or {})}
    return subprocess.run([sys.executable, "-m", "server.cli", *args], env=env,
                          capture_output=True, text=True, timeout=180)


async def count(database_url: str, table: str) -> int:
    if database_url.startswith("sqlite://"):
        with sqlite3.connect(database_url[len("sqlite://"):]) as conn:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    conn = await asyncpg.connect(database_url.replace("postgres://", "postgresql://", 1))
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()


async def test_backup_then_restore_into_an_empty_place_gives_everything_back(
    db: Starlette, tmp_path: Path
) -> None:
    settings = db.state.settings
    await load_demo(observations=60, seed=3)
    photo = settings.media_dir / "originals" / "ab" / "photo.jpg"
    photo.parent.mkdir(parents=True, exist_ok=True)
    photo.write_bytes(b"\xff\xd8 not really a jpeg \xff\xd9")
    archive = tmp_path / "backup.tar.gz"

    done = phenosync(settings.data_dir, settings.database_url, "backup", str(archive))
    assert done.returncode == 0, done.stderr
    assert archive.exists() and not archive.with_name("backup.tar.gz.partial").exists()

    target_dir = tmp_path / "restored"
    if settings.database_url.startswith("sqlite://"):
        target_url = f"sqlite://{tmp_path / 'restored.sqlite3'}"
        drop = None
    else:
        admin = await asyncpg.connect(POSTGRES_URL.replace("postgres://", "postgresql://", 1))
        name = f"{settings.database_url.rsplit('/', 1)[1]}_restore"
        await admin.execute(f'CREATE DATABASE "{name}"')
        target_url = settings.database_url.rsplit("/", 1)[0] + "/" + name
        drop = (admin, name)
    try:
        done = phenosync(target_dir, target_url, "restore", str(archive))
        assert done.returncode == 0, done.stderr
        assert await count(target_url, "observations") == await Observation.all().count() == 60
        assert await count(target_url, "users") == await count(settings.database_url, "users")
        restored = target_dir / "media" / "originals" / "ab" / "photo.jpg"
        assert restored.read_bytes() == photo.read_bytes()
        again = phenosync(target_dir, target_url, "restore", str(archive))
        assert again.returncode != 0 and "--force" in again.stderr
        forced = phenosync(target_dir, target_url, "restore", "--force", str(archive))
        assert forced.returncode == 0, forced.stderr
        assert await count(target_url, "observations") == 60
    finally:
        if drop is not None:
            admin, name = drop
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()


def test_restore_refuses_a_backup_of_another_database_kind(tmp_path: Path) -> None:
    import json
    import tarfile

    (tmp_path / "manifest.json").write_text(json.dumps(
        {"format": 1, "database": "postgres", "database_file": "database.pgdump",
         "folders": []}))
    (tmp_path / "database.pgdump").write_bytes(b"PGDMP")
    archive = tmp_path / "b.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "manifest.json", "manifest.json")
        tar.add(tmp_path / "database.pgdump", "database.pgdump")
    done = phenosync(tmp_path / "d", f"sqlite://{tmp_path / 'x.sqlite3'}", "restore", str(archive))
    assert done.returncode != 0 and "postgres" in done.stderr


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_backup_and_restore_with_media_on_s3(tmp_path: Path, s3_server: S3Server) -> None:
    """Media in a bucket are backed up through the storage interface and
    restored into another bucket (stale objects there removed), and into a
    local media folder: the way to move media between the two."""
    source, target = s3_server.new_bucket(), s3_server.new_bucket()
    storage = s3_server.storage(source)
    photo = os.urandom(3000)
    await storage.put("originals/ab", photo)
    await storage.put("derivatives/ab/320.jpg", b"small")
    await storage.write_at("uploads/cd", 0, chunks(b"half an ", b"upload"))
    await s3_server.storage(target).put("originals/stale", b"not in the backup")
    url = f"sqlite://{tmp_path / 'source.sqlite3'}"
    sqlite3.connect(tmp_path / "source.sqlite3").close()  # the media are what is tested
    archive = tmp_path / "backup.tar.gz"

    done = phenosync(tmp_path / "a", url, "backup", str(archive), env=s3_server.env(source))
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "a" / "media").exists()
    bare = backup(Settings.from_env({"PHENOSYNC_DATA_DIR": str(tmp_path / "a"),
                                     "PHENOSYNC_DATABASE_URL": url, **s3_server.env(source)}),
                  tmp_path / "bare.tar.gz", media=False)
    assert "media" not in bare["folders"]
    with tarfile.open(tmp_path / "bare.tar.gz") as tar:
        assert not [n for n in tar.getnames() if n.startswith("media")]

    into = f"sqlite://{tmp_path / 'target.sqlite3'}"
    done = phenosync(tmp_path / "b", into, "restore", str(archive), env=s3_server.env(target))
    assert done.returncode == 0, done.stderr
    restored = s3_server.storage(target)
    assert dict(restored.keys()) == {
        "originals/ab": len(photo), "derivatives/ab/320.jpg": 5, "uploads/cd": 14
    }
    with restored.open("originals/ab") as handle:
        assert handle.read() == photo
    # An unfinished upload goes on where it stopped.
    await restored.write_at("uploads/cd", 14, chunks(b" and the rest"))
    with restored.open("uploads/cd") as handle:
        assert handle.read() == b"half an upload and the rest"

    local = f"sqlite://{tmp_path / 'local.sqlite3'}"
    done = phenosync(tmp_path / "c", local, "restore", str(archive))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "c" / "media" / "originals" / "ab").read_bytes() == photo

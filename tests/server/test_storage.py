"""The storage contract: the same tests on both implementations, a local
directory and a bucket on a real S3-compatible server (tests/s3server.py)."""

from __future__ import annotations

import asyncio
import io
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.object_store import MIN_PART, S3Storage
from server.settings import Settings
from server.storage import (
    SYNC_SECONDS,
    WRITE_BUFFER,
    LocalStorage,
    Storage,
    StorageKeyError,
    storage_for,
)
from tests.s3server import S3Server

MIB = 1024 * 1024


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path)
    server: S3Server = request.getfixturevalue("s3_server")
    # The smallest part S3 allows, so that a few MiB span several parts.
    return server.storage(server.new_bucket(), part_size=MIN_PART)


async def read_all(storage: Storage, key: str, **kwargs: int) -> bytes:
    return b"".join([c async for c in storage.stream(key, 4, **kwargs)])


async def test_write_at_appends_and_cuts_off_what_follows(storage: Storage) -> None:
    assert await storage.write_at("uploads/a", 0, chunks(b"hello ", b"wrong")) == 11
    assert await storage.write_at("uploads/a", 6, chunks(b"world")) == 5
    assert await storage.size("uploads/a") == 11
    assert await read_all(storage, "uploads/a") == b"hello world"
    await storage.truncate("uploads/a", 5)
    with storage.open("uploads/a") as handle:
        assert handle.read() == b"hello"


async def test_create_then_write_at_holds_the_bytes_and_delete_undoes_it(
    storage: Storage,
) -> None:
    """``create`` (a tus creation) readies a key for the PATCH's write."""
    await storage.create("uploads/made")
    assert await storage.write_at("uploads/made", 0, chunks(b"photo ", b"bytes")) == 11
    assert await read_all(storage, "uploads/made") == b"photo bytes"
    await storage.create("uploads/other")
    await storage.delete("uploads/other")
    assert await storage.size("uploads/other") is None


async def test_local_create_makes_an_empty_file_cutting_off_what_was_there(
    tmp_path: Path,
) -> None:
    storage = LocalStorage(tmp_path)
    await storage.create("uploads/new")
    assert (tmp_path / "uploads" / "new").read_bytes() == b""
    await storage.put("uploads/old", b"stale")
    await storage.create("uploads/old")
    assert await storage.size("uploads/old") == 0


async def test_an_empty_write_makes_the_key(storage: Storage) -> None:
    assert await storage.write_at("uploads/e", 0, chunks()) == 0
    assert await storage.size("uploads/e") == 0
    assert await storage.size("uploads/other") is None


async def test_write_at_in_blocks_observes_every_byte_and_keeps_what_arrived(
    tmp_path: Path,
) -> None:
    storage = LocalStorage(tmp_path)
    data = random.Random(5).randbytes(3 * WRITE_BUFFER + 1234)
    seen: list[bytes] = []
    progress: list[int] = []

    async def body(fail: bool) -> AsyncIterator[bytes]:
        for start in range(0, len(data), 100_000):
            if fail and start >= 2 * WRITE_BUFFER:
                raise ConnectionError("the phone went away")
            if start in (1_100_000, 2_200_000, 2_800_000):  # slow: progress is synced
                await asyncio.sleep(SYNC_SECONDS * 0.6)
            yield data[start : start + 100_000]

    written = await storage.write_at(
        "uploads/c", 0, body(False), on_flush=progress.append, observe=seen.append
    )
    assert written == len(data) and b"".join(seen) == data
    # Progress is reported once synced: some of the bytes, never more than were written.
    assert progress == sorted(progress) and 0 < progress[-1] < len(data)
    with storage.open("uploads/c") as handle:
        assert handle.read() == data
    # A body that breaks off: every byte received before is written and synced.
    with pytest.raises(ConnectionError):
        await storage.write_at("uploads/c", 0, body(True))
    with storage.open("uploads/c") as handle:
        kept = handle.read()
    assert kept == data[: (2 * WRITE_BUFFER // 100_000 + 1) * 100_000]


async def test_write_at_keeps_every_byte_in_order_and_nothing_after(storage: Storage) -> None:
    data = random.Random(7).randbytes(4 * WRITE_BUFFER + 4321)
    pieces = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    progress: list[int] = []
    written = await storage.write_at(
        "uploads/e", 0, chunks(*pieces), on_flush=progress.append
    )

    def stored() -> bytes:
        with storage.open("uploads/e") as handle:
            return handle.read()

    assert written == len(data) and progress == sorted(progress)
    assert stored() == data
    rest = data[1000:]
    assert await storage.write_at("uploads/e", 1000, chunks(rest)) == len(rest)
    assert stored() == data
    short = await storage.write_at("uploads/e", 5, chunks(data[5:2 * WRITE_BUFFER]))
    assert short == 2 * WRITE_BUFFER - 5
    assert stored() == data[: 2 * WRITE_BUFFER]


async def test_on_written_sees_every_byte_and_what_it_raises_is_raised(
    storage: Storage,
) -> None:
    data = random.Random(8).randbytes(2 * WRITE_BUFFER + 5)
    seen: list[bytes] = []

    def on_written() -> None:  # the caller's check of the whole file
        with storage.open("uploads/w") as handle:
            seen.append(handle.read())

    pieces = chunks(data[:WRITE_BUFFER], data[WRITE_BUFFER:])
    assert await storage.write_at("uploads/w", 0, pieces, on_written=on_written) == len(data)
    assert seen == [data]

    async def broken() -> AsyncIterator[bytes]:
        yield data[:100]
        raise ConnectionError("the phone went away")

    with pytest.raises(ConnectionError):
        await storage.write_at("uploads/w", 0, broken(), on_written=on_written)
    assert len(seen) == 1  # not for a body that broke off

    def refuse() -> None:
        raise ValueError("not an image")

    with pytest.raises(ValueError):
        await storage.write_at("uploads/w", 0, chunks(b"abc"), on_written=refuse)
    with storage.open("uploads/w") as handle:
        assert handle.read() == b"abc"  # written and kept all the same


async def test_copy_put_delete(storage: Storage) -> None:
    await storage.put("uploads/b", b"bytes")
    await storage.copy("uploads/b", "originals/abc")
    await storage.put("uploads/c", b"other")
    await storage.copy("uploads/c", "originals/abc")  # an existing target is kept
    await storage.delete("uploads/b")
    assert await storage.size("uploads/b") is None
    assert await storage.size("originals/abc") == 5
    assert await read_all(storage, "originals/abc") == b"bytes"
    await storage.delete("uploads/b")  # deleting twice is fine


async def test_stream_a_range_and_open_seeks(storage: Storage) -> None:
    data = bytes(range(256)) * 40
    await storage.put("derivatives/x/320.jpg", data)
    assert await read_all(storage, "derivatives/x/320.jpg", start=100, end=1000) == data[100:1000]
    assert await read_all(storage, "derivatives/x/320.jpg", start=10000) == data[10000:]
    with storage.open("derivatives/x/320.jpg") as handle:
        handle.seek(-16, io.SEEK_END)
        assert handle.read() == data[-16:]
        handle.seek(5)
        assert handle.read(3) == data[5:8] and handle.tell() == 8
    with pytest.raises(FileNotFoundError):
        storage.open("derivatives/x/missing.jpg")


async def test_a_large_upload_in_pieces_cut_resumed_and_copied(storage: Storage) -> None:
    """Several parts' worth, written as tus does: a PATCH, a cut back to an
    earlier offset (a failed checksum), resumed; then kept as an original."""
    data = os.urandom(12 * MIB + 12345)
    flushed: list[int] = []

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, 7 * MIB, 300_000):
            if i in (2_400_000, 4_800_000, 6_000_000):  # slow: progress is synced
                await asyncio.sleep(SYNC_SECONDS * 0.6)
            yield data[i:min(i + 300_000, 7 * MIB)]

    first = await storage.write_at("uploads/big", 0, pieces(), on_flush=flushed.append)
    assert first == 7 * MIB
    assert flushed and flushed == sorted(flushed) and flushed[-1] <= first
    await storage.truncate("uploads/big", 6 * MIB + 77)
    assert await storage.size("uploads/big") == 6 * MIB + 77
    rest = data[6 * MIB + 77:]
    pieces = (rest[i:i + MIB] for i in range(0, len(rest), MIB))
    written = await storage.write_at("uploads/big", 6 * MIB + 77, chunks(*pieces))
    assert written == len(rest)
    assert await storage.size("uploads/big") == len(data)
    with storage.open("uploads/big") as handle:
        handle.seek(5 * MIB - 10)
        assert handle.read(20) == data[5 * MIB - 10:5 * MIB + 10]  # across a part boundary
    await storage.copy("uploads/big", "originals/big")
    await storage.delete("uploads/big")
    assert await storage.size("uploads/big") is None
    with storage.open("originals/big") as handle:
        assert handle.read() == data
    assert await read_all(storage, "originals/big", start=MIB, end=MIB + 9) == data[MIB:MIB + 9]


async def test_a_broken_body_keeps_what_arrived(storage: Storage) -> None:
    async def breaks() -> AsyncIterator[bytes]:
        yield b"first "
        yield b"second"
        raise ConnectionResetError("the phone went into a tunnel")

    with pytest.raises(ConnectionResetError):
        await storage.write_at("uploads/d", 0, breaks())
    assert await storage.size("uploads/d") == 12
    await storage.write_at("uploads/d", 12, chunks(b" third"))
    assert await read_all(storage, "uploads/d") == b"first second third"


async def test_write_at_continues_a_put_key(storage: Storage) -> None:
    """A key stored whole (as a restore does) can be continued and cut."""
    await storage.put("uploads/r", b"restored bytes")
    await storage.write_at("uploads/r", 9, chunks(b"and more"))
    assert await read_all(storage, "uploads/r") == b"restored and more"


async def test_keys_put_file_and_remove_for_backups(storage: Storage) -> None:
    await storage.put("originals/aa", b"12345")
    await storage.write_at("uploads/u", 0, chunks(b"abc"))
    storage.put_file("derivatives/aa/320.jpg", io.BytesIO(b"jpeg"))
    assert dict(storage.keys()) == {
        "originals/aa": 5, "uploads/u": 3, "derivatives/aa/320.jpg": 4
    }
    storage.remove("uploads/u")
    assert sorted(k for k, _ in storage.keys()) == ["derivatives/aa/320.jpg", "originals/aa"]


@pytest.mark.parametrize("key", ["../etc/passwd", "/etc/passwd", "uploads/../../x",
                                 "Uploads/A", "uploads/a b", "", "uploads/a~part/000001"])
async def test_keys_cannot_leave_the_root(storage: Storage, key: str) -> None:
    with pytest.raises(ValueError):
        await storage.size(key)
    with pytest.raises(ValueError):
        await storage.put(key, b"x")


async def test_s3_keeps_an_upload_as_parts_and_an_original_as_one_object(
    s3_server: S3Server,
) -> None:
    bucket = s3_server.new_bucket()
    storage = s3_server.storage(bucket, "media/", part_size=MIN_PART)
    data = os.urandom(MIN_PART * 2 + 5)
    await storage.write_at("uploads/p", 0, chunks(data))
    objects = s3_server.objects(bucket)
    assert objects == {
        "media/uploads/p~part/000001": MIN_PART,
        "media/uploads/p~part/000002": MIN_PART,
        "media/uploads/p~part/000003": 5,
    }
    await storage.copy("uploads/p", "originals/p")  # UploadPartCopy: server side
    await storage.delete("uploads/p")
    assert s3_server.objects(bucket) == {"media/originals/p": len(data)}


def test_settings_choose_the_storage(tmp_path: Path, s3_server: S3Server) -> None:
    local = Settings.from_env({"PHENOSYNC_DATA_DIR": str(tmp_path)})
    assert isinstance(storage_for(local), LocalStorage)
    env = {"PHENOSYNC_DATA_DIR": str(tmp_path), **s3_server.env("photos", "site/a")}
    chosen = storage_for(Settings.from_env(env))
    assert isinstance(chosen, S3Storage)
    assert (chosen.bucket, chosen.prefix) == ("photos", "site/a/")
    for wrong in ("s3://", "/srv/media", "gs://bucket"):
        with pytest.raises(ValueError, match="PHENOSYNC_MEDIA_URL"):
            Settings.from_env({"PHENOSYNC_DATA_DIR": str(tmp_path),
                               "PHENOSYNC_MEDIA_URL": wrong})


def test_a_key_through_a_link_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "media", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "originals").symlink_to(outside, target_is_directory=True)
    (root / "uploads").mkdir()
    (root / "uploads" / "x").symlink_to(outside / "file")
    storage = LocalStorage(root)
    for key in ("originals/abc", "uploads/x", "uploads/."):
        with pytest.raises(StorageKeyError):
            storage.key_path(key)
    assert storage.key_path("uploads/y") == root / "uploads" / "y"


async def test_files_are_opened_without_following_a_link(tmp_path: Path) -> None:
    """A link to a file inside the root is not followed either."""
    storage = LocalStorage(tmp_path)
    await storage.put("originals/real", b"real")
    (tmp_path / "originals" / "link").symlink_to(tmp_path / "originals" / "real")
    with pytest.raises(OSError):
        storage.open("originals/link")
    with pytest.raises(OSError):
        await storage.write_at("originals/link", 0, chunks(b"overwritten"))
    await storage.put("originals/link", b"replaced")  # replaces the link, not its target
    assert (tmp_path / "originals" / "real").read_bytes() == b"real"

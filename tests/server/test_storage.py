from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.storage import WRITE_BUFFER, LocalStorage


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_write_at_appends_and_cuts_off_what_follows(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    assert await storage.write_at("uploads/a", 0, chunks(b"hello ", b"wrong")) == 11
    assert await storage.write_at("uploads/a", 6, chunks(b"world")) == 5
    assert await storage.size("uploads/a") == 11
    assert b"".join([c async for c in storage.stream("uploads/a", 4)]) == b"hello world"
    await storage.truncate("uploads/a", 5)
    with storage.open("uploads/a") as handle:
        assert handle.read() == b"hello"


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
            yield data[start : start + 100_000]

    written = await storage.write_at(
        "uploads/c", 0, body(False), on_flush=progress.append, observe=seen.append
    )
    assert written == len(data) and b"".join(seen) == data
    assert progress == sorted(progress) and 0 < progress[-1] < len(data)
    with storage.open("uploads/c") as handle:
        assert handle.read() == data
    # A body that breaks off: every byte received before is written and synced.
    with pytest.raises(ConnectionError):
        await storage.write_at("uploads/c", 0, body(True))
    with storage.open("uploads/c") as handle:
        kept = handle.read()
    assert kept == data[: (2 * WRITE_BUFFER // 100_000 + 1) * 100_000]


async def test_copy_put_delete(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    await storage.put("uploads/b", b"bytes")
    await storage.copy("uploads/b", "originals/abc")
    await storage.delete("uploads/b")
    assert await storage.size("uploads/b") is None
    assert await storage.size("originals/abc") == 5
    await storage.delete("uploads/b")  # deleting twice is fine


@pytest.mark.parametrize("key", ["../etc/passwd", "/etc/passwd", "uploads/../../x",
                                 "Uploads/A", "uploads/a b", ""])
def test_keys_cannot_leave_the_root(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError):
        LocalStorage(tmp_path).key_path(key)

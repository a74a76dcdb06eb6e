from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.storage import LocalStorage


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

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.storage import LocalStorage, StorageKeyError


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

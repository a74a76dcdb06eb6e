"""Media storage behind one small interface: bytes by key.

Everything that touches media (uploads, originals, derivatives) goes through
``Storage``.  Two implementations: a local directory (``LocalStorage``, the
default) and an S3-compatible bucket (``server.object_store.S3Storage``, when
``PHENOSYNC_MEDIA_URL`` is ``s3://bucket/prefix``); ``storage_for`` picks one
from the settings.  ``tests/server/test_storage.py`` runs the same contract
tests on both.

Keys are made by the server only (``uploads/<random id>``,
``originals/<sha256>``, ``derivatives/<sha256>/<size>.jpg``): a name a client
sent never becomes part of a key.  ``key_path`` refuses anything but plain
lower-case segments anyway, and a path that a symbolic link inside the media
directory would lead out of it; files are opened without following a link,
so a key can never read or write outside the root
(``tests/server/test_storage.py``).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from anyio import to_thread

if TYPE_CHECKING:
    from server.settings import Settings

_KEY = re.compile(r"^[a-z0-9_-]+(/[a-z0-9_.-]+)*$")
# Bytes gathered before one write: few thread hops, little memory per upload.
WRITE_BUFFER = 1024 * 1024
FLUSH_SECONDS = 0.5


class StorageKeyError(ValueError):
    """A key that is malformed or would leave the media directory."""


class Storage(Protocol):
    async def write_at(
        self,
        key: str,
        offset: int,
        chunks: AsyncIterable[bytes],
        *,
        on_flush: Callable[[int], object] | None = None,
        observe: Callable[[bytes | bytearray], object] | None = None,
    ) -> int:
        """Write ``chunks`` at ``offset`` (cutting off anything after it); return
        the number of bytes written.  ``on_flush(total)`` is called after each
        buffered write, so a caller may record progress; ``observe(block)`` sees
        every block just before it is written, in the writing thread (hashes
        are computed there, off the event loop); everything written is synced
        to disk before this returns."""

    async def truncate(self, key: str, length: int) -> None: ...

    async def put(self, key: str, data: bytes) -> None: ...

    def open(self, key: str) -> BinaryIO:
        """A blocking, seekable file object for reading (for work in a thread);
        ``FileNotFoundError`` when there is no such key."""

    def stream(
        self, key: str, chunk_size: int = 256 * 1024, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """The bytes ``start`` up to (not including) ``end`` (default: the end)."""

    async def size(self, key: str) -> int | None: ...

    async def copy(self, source: str, target: str) -> None:
        """Make ``target`` hold ``source``'s bytes; an existing target is kept
        (keys that name content by its hash are equal when they exist)."""

    async def delete(self, key: str) -> None: ...

    # Blocking, for backup and restore (the CLI, not the server):

    def keys(self) -> Iterator[tuple[str, int]]:
        """Every key with its size, in no particular order."""

    def put_file(self, key: str, source: BinaryIO) -> None:
        """Store ``source``'s bytes (read to its end) under ``key``."""

    def remove(self, key: str) -> None:
        """``delete``, blocking."""


def check_key(key: str) -> str:
    """``key`` when it is one the server makes; ``ValueError`` otherwise."""
    if not _KEY.match(key) or ".." in key or "." in key.split("/"):
        raise StorageKeyError(f"not a storage key: {key!r}")
    return key


class LocalStorage:
    """Keys are files below ``root``; writes are atomic where it matters."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def key_path(self, key: str) -> Path:
        path = self.root / check_key(key)
        # A symbolic link inside the media directory (planted, or restored from
        # a doctored backup) must not lead a key out of it.
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise StorageKeyError(f"storage key {key!r} leads out of {self.root}")
        return path

    async def write_at(
        self,
        key: str,
        offset: int,
        chunks: AsyncIterable[bytes],
        *,
        on_flush: Callable[[int], object] | None = None,
        observe: Callable[[bytes | bytearray], object] | None = None,
    ) -> int:
        path = self.key_path(key)
        # File work runs in a thread, one step at a time, while the event loop
        # goes on receiving: at most one block is being written while the
        # next one fills (WRITE_BUFFER bytes each), so memory stays bounded
        # and the body is never held up by the disk it is waiting for.
        handle: BinaryIO | None = None
        in_flight: tuple[asyncio.Future[None], int] | None = None
        written = 0
        buffer = bytearray()
        last_flush = time.monotonic()

        def flush(data: bytearray, last: bool) -> None:  # opened by the first call
            nonlocal handle
            if handle is None:
                handle = _open_at(path, offset)
            if observe is not None and data:
                observe(data)
            handle.write(data)
            handle.flush()
            if last:
                os.fsync(handle.fileno())
                handle.close()

        def start(work: Callable[..., None], *args: object, size: int = 0) -> None:
            nonlocal in_flight
            in_flight = asyncio.ensure_future(to_thread.run_sync(work, *args)), size

        async def settle() -> None:
            nonlocal in_flight, written
            if in_flight is None:
                return
            (step, size), in_flight = in_flight, None
            await step
            if size:
                written += size
                if on_flush is not None:
                    await _maybe_await(on_flush(written))

        try:
            async for chunk in chunks:
                buffer += chunk
                # A slow phone sends little at a time: flush at least every
                # FLUSH_SECONDS, so recorded progress follows what arrived.
                if len(buffer) >= WRITE_BUFFER or (
                    buffer and time.monotonic() - last_flush >= FLUSH_SECONDS
                ):
                    last_flush = time.monotonic()
                    block, buffer = buffer, bytearray()  # handed over, not copied
                    await settle()
                    start(flush, block, False, size=len(block))
        finally:
            # Whatever arrived before an error or a dropped connection is kept:
            # the caller decides (and records) how much of it counts.
            try:
                await settle()
                await to_thread.run_sync(flush, buffer, True)  # synced and closed
                written += len(buffer)
            finally:
                if handle is not None and not handle.closed:  # an error on the way
                    await to_thread.run_sync(handle.close)
        return written

    async def truncate(self, key: str, length: int) -> None:
        path = self.key_path(key)
        await to_thread.run_sync(_truncate, path, length)

    async def put(self, key: str, data: bytes) -> None:
        await to_thread.run_sync(_atomic_write, self.key_path(key), data)

    def open(self, key: str) -> BinaryIO:
        fd = os.open(self.key_path(key), os.O_RDONLY | os.O_NOFOLLOW)
        return os.fdopen(fd, "rb")

    async def stream(
        self, key: str, chunk_size: int = 256 * 1024, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        handle = await to_thread.run_sync(self.open, key)
        try:
            if start:
                handle.seek(start)
            left = None if end is None else max(end - start, 0)
            while left is None or left > 0:
                want = chunk_size if left is None else min(chunk_size, left)
                chunk = await to_thread.run_sync(handle.read, want)
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk
        finally:
            await to_thread.run_sync(handle.close)

    async def size(self, key: str) -> int | None:
        path = self.key_path(key)
        try:
            return (await to_thread.run_sync(path.stat)).st_size
        except FileNotFoundError:
            return None

    async def copy(self, source: str, target: str) -> None:
        await to_thread.run_sync(_link_or_copy, self.key_path(source), self.key_path(target))

    async def delete(self, key: str) -> None:
        await to_thread.run_sync(self.remove, key)

    def keys(self) -> Iterator[tuple[str, int]]:
        if not self.root.is_dir():
            return
        for path in sorted(self.root.rglob("*")):
            key = path.relative_to(self.root).as_posix()
            # Temporary files of an atomic write start with a dot: not keys.
            if path.is_file() and not path.name.startswith(".") and _KEY.match(key):
                yield key, path.stat().st_size

    def put_file(self, key: str, source: BinaryIO) -> None:
        path = self.key_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as handle:
            shutil.copyfileobj(source, handle, WRITE_BUFFER)
        os.replace(tmp, path)

    def remove(self, key: str) -> None:
        self.key_path(key).unlink(missing_ok=True)


async def _maybe_await(value: object) -> None:
    if hasattr(value, "__await__"):
        await value


def _open_at(path: Path, offset: int) -> BinaryIO:
    _make_parent(path)
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    if created:
        _fsync_dir(path.parent)  # the new name survives a power cut, not only its bytes
    handle = os.fdopen(fd, "wb")
    handle.truncate(offset)
    handle.seek(offset)
    return handle


def _truncate(path: Path, length: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return
    try:
        os.ftruncate(fd, length)
    finally:
        os.close(fd)


def _create_new(path: Path) -> BinaryIO:
    """A new file at ``path`` (a stale one, or a link planted there, is removed first)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)  # as open()
    return os.fdopen(fd, "wb")


def _make_parent(path: Path) -> None:
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        _fsync_dir(path.parent.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write a temporary file, sync it, rename it over ``path``, sync the
    folder: after a crash or power cut ``path`` holds the old bytes or all
    the new ones, never a prefix or nothing."""
    _make_parent(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with _create_new(tmp) as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _link_or_copy(source: Path, target: Path) -> None:
    """Make ``target`` hold ``source``'s bytes; an existing target is kept
    (keys that name content by its hash are equal when they exist)."""
    if target.exists():
        return
    _make_parent(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp, follow_symlinks=False)  # the source's bytes are synced already
    except OSError:
        with open(os.open(source, os.O_RDONLY | os.O_NOFOLLOW), "rb") as src, \
                _create_new(tmp) as dst:
            shutil.copyfileobj(src, dst)
            dst.flush()
            os.fsync(dst.fileno())
    os.replace(tmp, target)
    _fsync_dir(target.parent)


def storage_for(settings: Settings) -> Storage:
    """The storage ``settings`` ask for: ``PHENOSYNC_MEDIA_URL`` empty means
    the ``media/`` folder of the data dir, ``s3://bucket/prefix`` a bucket."""
    if settings.media_url.startswith("s3://"):
        from server.object_store import S3Storage  # boto3 loads only when used

        return S3Storage.from_settings(settings)
    return LocalStorage(settings.media_dir)

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
# Bytes written are synced (and reported to ``on_flush``) at least this often.
SYNC_SECONDS = 1.0


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
        on_written: Callable[[], object] | None = None,
    ) -> int:
        """Write ``chunks`` at ``offset`` (cutting off anything after it); return
        the number of bytes written.  ``on_flush(total)`` is called from time
        to time (local storage: about every SYNC_SECONDS) with how many bytes
        are on disk (synced), so a caller may record progress that survives a
        power cut; ``observe(block)`` sees
        every block just before it is written, in the writing thread (hashes
        are computed there, off the event loop); everything written is synced
        to disk before this returns.
        ``on_written()``: called in a worker thread once every chunk is
        written, when they all arrived (not after an error), possibly while the
        last sync runs; what it raises is raised here after that sync."""

    async def create(self, key: str) -> None:
        """Make ``key`` ready for ``write_at`` ahead of its bytes (a tus
        creation, before its PATCH): local storage makes an empty file and
        syncs its folder, so that the name survives a power cut and the write
        that follows syncs only its bytes; a bucket has nothing to do (a
        part is stored whole).  Deleting the key undoes it."""

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
        on_written: Callable[[], object] | None = None,
    ) -> int:
        path = self.key_path(key)
        # File work runs in a thread, one step at a time, while the event loop
        # goes on receiving: at most one block is being written while the
        # next one fills (WRITE_BUFFER bytes each), so memory stays bounded
        # and the body is never held up by the disk it is waiting for.  A
        # block is the chunks as they arrived (a list, not joined: copying
        # them into one buffer cost the event loop more than receiving them).
        #
        # Syncing, which the caller waits for at the end, is started early in
        # other threads, beside the writing: a new file's directory entry as
        # soon as the file is made, and the bytes written so far every
        # SYNC_SECONDS (so that the progress reported to ``on_flush`` is on
        # disk).  Not also once the end is near: an upload that arrives
        # within a second is synced once, at its end (a second sync begun
        # beside the writing cost more than the shorter last sync saved;
        # bench/photo_report.md); each block's writeback is started as it
        # is written instead (``_write_back``).  ``on_written`` runs beside
        # the last sync.  A file made by ``create`` has its name synced already.
        handle: BinaryIO | None = None
        created = False
        in_flight: tuple[asyncio.Future[None], int] | None = None
        written = 0
        block: list[bytes] = []
        size = 0
        last_flush = last_sync = time.monotonic()
        named: asyncio.Future[None] | None = None  # the new file's name synced
        syncing: asyncio.Future[None] | None = None  # the bytes written so far synced
        covering = durable = reported = 0  # bytes: the sync covers, are synced, reported
        loop = asyncio.get_running_loop()
        all_written = asyncio.Event()  # set by the last write, before its sync

        def flush(chunks: list[bytes], last: bool) -> None:  # opened by the first call
            nonlocal handle, created
            if handle is None:
                handle, created = _open_at(path, offset)
            start = handle.tell()
            for chunk in chunks:
                if observe is not None:
                    observe(chunk)
                handle.write(chunk)
            handle.flush()
            if not last:
                _write_back(handle.fileno(), start, handle.tell() - start)
            if last:
                loop.call_soon_threadsafe(all_written.set)
                os.fsync(handle.fileno())
                handle.close()

        def start(work: Callable[..., None], *args: object, size: int = 0) -> None:
            nonlocal in_flight
            in_flight = asyncio.ensure_future(to_thread.run_sync(work, *args)), size

        def sync_written() -> None:
            nonlocal syncing, covering, last_sync
            assert handle is not None
            # A descriptor of its own: the writer may close the file meanwhile.
            fd = os.dup(handle.fileno())
            covering, last_sync = written, time.monotonic()
            syncing = asyncio.ensure_future(to_thread.run_sync(_sync_and_close, fd))

        async def settle() -> None:
            nonlocal in_flight, written, named, syncing, durable, reported
            if in_flight is None:
                return
            (step, size), in_flight = in_flight, None
            await step
            written += size
            if created and named is None:
                named = asyncio.ensure_future(to_thread.run_sync(_fsync_dir, path.parent))
            if syncing is not None and syncing.done():
                await syncing  # its error, if any, is raised here
                syncing, durable = None, covering
            if durable > reported and (named is None or named.done()):
                if named is not None:
                    await named
                reported = durable
                if on_flush is not None:
                    await _maybe_await(on_flush(durable))
            if (syncing is None and written > durable
                    and time.monotonic() - last_sync >= SYNC_SECONDS):
                sync_written()

        arrived = False
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                block.append(chunk)
                size += len(chunk)
                # A slow phone sends little at a time: flush at least every
                # FLUSH_SECONDS, so recorded progress follows what arrived.
                if size >= WRITE_BUFFER or time.monotonic() - last_flush >= FLUSH_SECONDS:
                    last_flush = time.monotonic()
                    full, block, full_size, size = block, [], size, 0  # handed over
                    await settle()
                    start(flush, full, False, size=full_size)
            arrived = True
        finally:
            # Whatever arrived before an error or a dropped connection is kept:
            # the caller decides (and records) how much of it counts.
            checking: asyncio.Future[object] | None = None
            try:
                await settle()
                last = asyncio.ensure_future(to_thread.run_sync(flush, block, True))
                if arrived and on_written is not None:
                    waiting = asyncio.ensure_future(all_written.wait())
                    await asyncio.wait((last, waiting), return_when=asyncio.FIRST_COMPLETED)
                    waiting.cancel()
                    if all_written.is_set():
                        checking = asyncio.ensure_future(to_thread.run_sync(on_written))
                await last  # synced and closed
                written += size
                if created and named is None:
                    await to_thread.run_sync(_fsync_dir, path.parent)
            finally:
                for running in (named, syncing, checking):
                    if running is not None:
                        await running
                if handle is not None and not handle.closed:  # an error on the way
                    await to_thread.run_sync(handle.close)
        return written

    async def create(self, key: str) -> None:
        await to_thread.run_sync(_create_empty, self.key_path(key))

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


def _open_at(path: Path, offset: int) -> tuple[BinaryIO, bool]:
    """The file at ``path`` cut at ``offset`` and positioned there, and whether
    it was made now (then its directory must be synced too, for the new name
    to survive a power cut, not only its bytes)."""
    _make_parent(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
        created = False
    except FileNotFoundError:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        created = True
    handle = os.fdopen(fd, "wb")
    handle.truncate(offset)
    handle.seek(offset)
    return handle, created


def _write_back(fd: int, start: int, length: int) -> None:
    """Start writing a block just written to the disk, without waiting for
    it (Linux: ``POSIX_FADV_DONTNEED`` starts the writeback of dirty pages
    and keeps them till it ends): the sync at the end then writes only the
    last block, where a file written whole and synced once (the plain PUT of
    bench/photo_bench.py) waits for all of it.  No sync, no cache flush: what
    counts as durable is still only what a sync covered."""
    if _FADVISE and length > 0:
        os.posix_fadvise(fd, start, length, os.POSIX_FADV_DONTNEED)


_FADVISE = hasattr(os, "posix_fadvise")


def _sync_and_close(fd: int) -> None:
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _truncate(path: Path, length: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return
    try:
        os.ftruncate(fd, length)
    finally:
        os.close(fd)


def _create_empty(path: Path) -> None:
    """An empty file at ``path`` (what was there is cut to nothing), its
    name synced: a new file's name is in its folder, which ``fsync`` of the
    file alone does not promise to make durable."""
    _make_parent(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.close(fd)
    _fsync_dir(path.parent)


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

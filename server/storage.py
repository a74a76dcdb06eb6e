"""Media storage behind one small interface: bytes by key.

Everything that touches media (uploads, originals, derivatives, later
releases) goes through ``Storage``; a local directory implements it now, and
an object store can later (``write_at`` then stages parts, ``copy`` is a
server-side copy).

Keys are made by the server only (``uploads/<random id>``,
``originals/<sha256>``, ``derivatives/<sha256>/<size>.jpg``): a name a client
sent never becomes part of a key.  ``key_path`` refuses anything but plain
lower-case segments anyway, so a key can never leave the root.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO, Protocol

from anyio import to_thread

_KEY = re.compile(r"^[a-z0-9_-]+(/[a-z0-9_.-]+)*$")
# Bytes gathered before one write: few thread hops, little memory per upload.
WRITE_BUFFER = 1024 * 1024
FLUSH_SECONDS = 0.5


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
        """A blocking file object for reading (for work in a thread)."""

    def stream(self, key: str, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]: ...

    async def size(self, key: str) -> int | None: ...

    async def copy(self, source: str, target: str) -> None: ...

    async def delete(self, key: str) -> None: ...


class LocalStorage:
    """Keys are files below ``root``; writes are atomic where it matters."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def key_path(self, key: str) -> Path:
        if not _KEY.match(key) or ".." in key:
            raise ValueError(f"not a storage key: {key!r}")
        return self.root / key

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
        return self.key_path(key).open("rb")

    async def stream(self, key: str, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        handle = await to_thread.run_sync(self.open, key)
        try:
            while True:
                chunk = await to_thread.run_sync(handle.read, chunk_size)
                if not chunk:
                    return
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
        await to_thread.run_sync(lambda: self.key_path(key).unlink(missing_ok=True))


async def _maybe_await(value: object) -> None:
    if hasattr(value, "__await__"):
        await value


def _open_at(path: Path, offset: int) -> BinaryIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    handle = os.fdopen(fd, "wb")
    handle.truncate(offset)
    handle.seek(offset)
    return handle


def _truncate(path: Path, length: int) -> None:
    if path.exists():
        os.truncate(path, length)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _link_or_copy(source: Path, target: Path) -> None:
    """Make ``target`` hold ``source``'s bytes; an existing target is kept
    (keys that name content by its hash are equal when they exist)."""
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def storage_for(media_dir: Path) -> LocalStorage:
    return LocalStorage(media_dir)

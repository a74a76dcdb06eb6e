"""Media in a bucket of an S3-compatible object store: the ``Storage``
interface of ``server/storage.py`` over boto3 (run in threads).

Selected with ``PHENOSYNC_MEDIA_URL=s3://bucket/prefix`` (and the
``PHENOSYNC_S3_*`` settings).  Keys map to object names ``prefix/key``.

How a tus upload reaches the bucket
-----------------------------------
A tus upload arrives as PATCH requests of any size, each continuing at an
offset, possibly on another server process or machine, possibly cut short
(a dropped connection, a failed checksum) so that the next PATCH continues
from an earlier offset.  Neither staging on local disk (a later PATCH or the
processing job may run on another machine) nor one S3 multipart upload (an
unfinished multipart upload cannot be read back, so it cannot be cut to an
earlier offset or resumed on another machine from a prefix it does not hold)
covers that.  So a key written with ``write_at`` is kept as numbered *part
objects* ``prefix/key~part/000001``, ``~part/000002``, …: every part but the
last holds ``part_size`` bytes (at least 5 MiB, S3's smallest multipart part),
the last one fewer.  A PATCH body is buffered one part at a time in a spooled
temporary file (1 MiB in memory, the rest on local disk) and each full part is
PUT as it fills, so memory per upload stays small and progress is durable
part by part; what is left when the body ends (or breaks off) is PUT as the
last part.  Cutting to an offset deletes the parts after it and rewrites the
one it falls in.  Everything is in the bucket, so any process can resume an
upload or process it.

When the upload is complete, ``copy`` to its ``originals/<sha256>`` key joins
the parts with a server-side S3 multipart upload (``UploadPartCopy``, no
bytes through this server) into one ordinary object, and the part objects are
deleted with the upload.  Reads of either form use HTTP range requests, so a
reader never holds more than it asked for.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, BinaryIO

import boto3
from anyio import to_thread
from botocore.config import Config
from botocore.exceptions import ClientError

from server.settings import Settings
from server.storage import WRITE_BUFFER, _maybe_await, check_key

MIN_PART = 5 * 1024 * 1024
PART_SIZE = 8 * 1024 * 1024
_PARTS = "~part/"
# Objects up to this size are copied with one CopyObject (S3 allows 5 GiB).
_COPY_LIMIT = 5 * 1024 * 1024 * 1024
_READ_BUFFER = 1024 * 1024


@dataclass(frozen=True)
class Segment:
    name: str
    size: int


class S3Storage:
    """Keys are objects in ``bucket`` below ``prefix``."""

    def __init__(self, client: Any, bucket: str, prefix: str = "",
                 part_size: int = PART_SIZE) -> None:
        if part_size < MIN_PART:
            raise ValueError(f"part_size must be at least {MIN_PART} bytes (S3's minimum)")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.part_size = part_size

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Storage:
        bucket, _, prefix = settings.media_url[len("s3://"):].partition("/")
        secret = str(settings.s3_secret_access_key)
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=settings.s3_endpoint_url or None,
            region_name=settings.s3_region or None,
            # Empty keys: boto3's own chain (an instance or pod role, ~/.aws).
            aws_access_key_id=settings.s3_access_key_id or None,
            aws_secret_access_key=secret or None,
            config=Config(
                # Other S3-compatible servers (MinIO, Garage, Ceph) are
                # addressed by path; AWS picks its own style.
                s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},
                retries={"mode": "standard", "max_attempts": 5},
                max_pool_connections=32,
                # Not every S3-compatible server knows the newer CRC checksums.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )
        return cls(client, bucket, prefix, part_size=settings.s3_part_bytes)

    # --- names -------------------------------------------------------------

    def _name(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _part_name(self, name: str, number: int) -> str:
        return f"{name}{_PARTS}{number:06d}"

    def _segments(self, name: str) -> list[Segment] | None:
        """The objects holding ``name``'s bytes, in order: the object itself,
        or its part objects; ``None`` when there is neither."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=name)
            return [Segment(name, int(head["ContentLength"]))]
        except ClientError as error:
            if not _missing(error):
                raise
        parts = [
            Segment(item["Key"], int(item["Size"]))
            for item in self._list(name + _PARTS)
        ]
        return sorted(parts, key=lambda s: s.name) or None

    def _list(self, prefix: str) -> Iterator[dict[str, Any]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        for page in pages:
            yield from page.get("Contents", [])

    def _get(self, name: str, start: int, end: int) -> Any:
        """The body of bytes ``start`` to ``end - 1`` of one object (a stream)."""
        return self.client.get_object(
            Bucket=self.bucket, Key=name, Range=f"bytes={start}-{end - 1}"
        )["Body"]

    def _read(self, name: str, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        body = self._get(name, start, end)
        try:
            return bytes(body.read())
        finally:
            body.close()

    def _put(self, name: str, body: bytes | BinaryIO | IO[bytes]) -> None:
        self.client.put_object(Bucket=self.bucket, Key=name, Body=body)

    def _delete_names(self, names: list[str]) -> None:
        for start in range(0, len(names), 1000):
            batch = names[start:start + 1000]
            self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": n} for n in batch], "Quiet": True},
            )

    def _cut(self, name: str, segments: list[Segment], length: int) -> list[Segment]:
        """Cut ``name`` to ``length`` bytes; return the segments left."""
        kept: list[Segment] = []
        surplus: list[str] = []
        position = 0
        for segment in segments:
            if position >= length and kept:
                surplus.append(segment.name)
            elif position + segment.size <= length:
                kept.append(segment)
            else:
                head = self._read(segment.name, 0, length - position)
                self._put(segment.name, head)
                kept.append(Segment(segment.name, len(head)))
            position += segment.size
        self._delete_names(surplus)
        return kept

    # --- the Storage interface ---------------------------------------------

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
        name = self._name(key)
        segments = await to_thread.run_sync(self._writable, name, offset)
        number = len(segments) + 1
        spool = tempfile.SpooledTemporaryFile(max_size=WRITE_BUFFER)
        in_part = 0  # bytes in the spool
        if segments and segments[-1].size < self.part_size:
            # The last part is not full: continue it (read back into the
            # spool, then PUT again when it fills or this write ends).
            number -= 1
            in_part = await to_thread.run_sync(self._fill, spool, segments[-1])
        stored = 0  # bytes of this call in full parts already PUT
        buffered = 0  # bytes of this call in the spool
        pending = bytearray()

        def spool_write(data: bytes) -> None:  # in order, in a worker thread
            spool.write(data)
            if observe is not None:
                observe(data)

        def put_part(part: int) -> None:
            spool.seek(0)
            self._put(self._part_name(name, part), spool)
            spool.seek(0)
            spool.truncate()

        arrived = False
        try:
            async for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    room = self.part_size - in_part - len(pending)
                    taken = view[:room]
                    pending += taken
                    view = view[len(taken):]
                    if len(pending) >= WRITE_BUFFER or in_part + len(pending) == self.part_size:
                        data = bytes(pending)
                        pending.clear()
                        await to_thread.run_sync(spool_write, data)
                        in_part += len(data)
                        buffered += len(data)
                    if in_part == self.part_size:
                        await to_thread.run_sync(put_part, number)
                        stored += buffered
                        number += 1
                        in_part = buffered = 0
                        if on_flush is not None:
                            await _maybe_await(on_flush(stored))
            arrived = True
        finally:
            # Whatever arrived before an error or a dropped connection is kept:
            # the caller decides (and records) how much of it counts.  The last
            # part is PUT when it got new bytes, or when the key has no object
            # yet (an empty write still makes the key).
            try:
                if pending:
                    await to_thread.run_sync(spool_write, bytes(pending))
                    in_part += len(pending)
                    buffered += len(pending)
                    pending.clear()
                if buffered or not segments and stored == 0:
                    await to_thread.run_sync(put_part, number)
                    stored += buffered
            finally:
                await to_thread.run_sync(spool.close)
        if arrived and on_written is not None:
            await to_thread.run_sync(on_written)  # the last part is stored: nothing to overlap
        return stored

    def _fill(self, spool: IO[bytes], segment: Segment) -> int:
        if not segment.size:
            return 0
        body = self._get(segment.name, 0, segment.size)
        try:
            while chunk := body.read(WRITE_BUFFER):
                spool.write(chunk)
        finally:
            body.close()
        return segment.size

    def _writable(self, name: str, offset: int) -> list[Segment]:
        """The part objects of ``name`` cut to ``offset``: an ordinary object
        (``put``, a restore) is first turned into part objects."""
        segments = self._segments(name) or []
        total = sum(s.size for s in segments)
        if offset > total:
            raise ValueError(f"cannot write {name!r} at {offset}: it holds {total} bytes")
        if segments and segments[0].name == name:
            parts: list[Segment] = []
            for number, start in enumerate(range(0, offset, self.part_size), start=1):
                data = self._read(name, start, min(start + self.part_size, offset))
                self._put(self._part_name(name, number), data)
                parts.append(Segment(self._part_name(name, number), len(data)))
            self.client.delete_object(Bucket=self.bucket, Key=name)
            return parts
        return self._cut(name, segments, offset)

    async def create(self, key: str) -> None:
        """Nothing to do: ``write_at`` stores each part whole, and its first
        call makes the key."""

    async def truncate(self, key: str, length: int) -> None:
        name = self._name(key)

        def cut() -> None:
            segments = self._segments(name)
            if segments is not None:
                self._cut(name, segments, length)

        await to_thread.run_sync(cut)

    async def put(self, key: str, data: bytes) -> None:
        await to_thread.run_sync(self._put, self._name(key), data)

    def open(self, key: str) -> BinaryIO:
        segments = self._segments(self._name(key))
        if segments is None:
            raise FileNotFoundError(key)
        return io.BufferedReader(_RangeReader(self, segments), buffer_size=_READ_BUFFER)

    async def stream(
        self, key: str, chunk_size: int = 256 * 1024, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        segments = await to_thread.run_sync(self._segments, self._name(key))
        if segments is None:
            raise FileNotFoundError(key)
        position = 0
        for segment in segments:
            lo = max(start, position)
            hi = segment.size + position if end is None else min(end, segment.size + position)
            if lo < hi:
                body = await to_thread.run_sync(self._get, segment.name, lo - position,
                                                hi - position)
                try:
                    while True:
                        chunk = await to_thread.run_sync(body.read, chunk_size)
                        if not chunk:
                            break
                        yield chunk
                finally:
                    await to_thread.run_sync(body.close)
            position += segment.size

    async def size(self, key: str) -> int | None:
        segments = await to_thread.run_sync(self._segments, self._name(key))
        return None if segments is None else sum(s.size for s in segments)

    async def copy(self, source: str, target: str) -> None:
        await to_thread.run_sync(self._copy, self._name(source), self._name(target))

    def _copy(self, source: str, target: str) -> None:
        if self._segments(target) is not None:
            return
        segments = self._segments(source)
        if segments is None:
            raise FileNotFoundError(source)
        # Empty segments cannot be parts (an empty range); a lone one is copied.
        segments = [s for s in segments if s.size] or segments[:1]
        if len(segments) == 1 and segments[0].size <= _COPY_LIMIT:
            self.client.copy_object(
                Bucket=self.bucket, Key=target,
                CopySource={"Bucket": self.bucket, "Key": segments[0].name},
            )
            return
        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=target)
        try:
            done = []
            for number, segment in enumerate(segments, start=1):
                part = self.client.upload_part_copy(
                    Bucket=self.bucket, Key=target, UploadId=upload["UploadId"],
                    PartNumber=number,
                    CopySource={"Bucket": self.bucket, "Key": segment.name},
                )
                done.append({"PartNumber": number, "ETag": part["CopyPartResult"]["ETag"]})
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=target, UploadId=upload["UploadId"],
                MultipartUpload={"Parts": done},
            )
        except BaseException:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=target, UploadId=upload["UploadId"]
            )
            raise

    async def delete(self, key: str) -> None:
        await to_thread.run_sync(self.remove, key)

    def keys(self) -> Iterator[tuple[str, int]]:
        sizes: dict[str, int] = {}
        for item in self._list(self.prefix):
            name = str(item["Key"])[len(self.prefix):]
            key = name.split(_PARTS, 1)[0]
            sizes[key] = sizes.get(key, 0) + int(item["Size"])
        yield from sizes.items()

    def put_file(self, key: str, source: BinaryIO) -> None:
        # boto3's managed transfer: multipart with parts in parallel when large.
        self.client.upload_fileobj(source, self.bucket, self._name(key))

    def remove(self, key: str) -> None:
        name = self._name(key)
        names = [name] + [str(item["Key"]) for item in self._list(name + _PARTS)]
        self._delete_names(names)


class _RangeReader(io.RawIOBase):
    """A seekable read-only file over the segments of one key: each read is
    one ranged GET (``open`` wraps it in a 1 MiB ``BufferedReader``)."""

    def __init__(self, storage: S3Storage, segments: list[Segment]) -> None:
        self.storage = storage
        self.segments = segments
        self.length = sum(s.size for s in segments)
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.length}[whence]
        self.position = max(base + offset, 0)
        return self.position

    def readall(self) -> bytes:
        # io's default reads 8 KiB at a time: one GET per segment instead.
        parts = []
        while self.position < self.length:
            data = self.read(self.length - self.position)
            if not data:
                break
            parts.append(data)
        return b"".join(parts)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        start = 0
        for segment in self.segments:
            if start <= self.position < start + segment.size:
                end = min(start + segment.size, self.position + len(view))
                data = self.storage._read(segment.name, self.position - start, end - start)
                view[: len(data)] = data
                self.position += len(data)
                return len(data)
            start += segment.size
        return 0


def _missing(error: ClientError) -> bool:
    code = str(error.response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")

"""tus 1.0.0 resumable uploads of photo files, at ``/api/v1/uploads/``.

Extensions: creation, creation-with-upload, expiration, checksum (sha1,
sha256), termination.  Written here on Starlette because no maintained tus
server library for Starlette/ASGI exists; the protocol is small.

The rules that matter on a phone network:

- Bodies stream to storage in 1 MiB writes; nothing holds a whole file.
- ``offset`` in the database is what counts.  While a PATCH streams, its
  progress (bytes handed to the OS) is recorded about once a second, so after a
  dropped connection or a server restart the client resumes close to where it
  was; bytes past the recorded offset are cut off on the next write.
- One writer per upload: a PATCH holds a short lease on the upload row
  (renewed while it streams); a second PATCH gets ``423``.  A crashed writer's
  lease runs out within ``LEASE_MS``.
- A PATCH with ``Upload-Checksum`` counts only if the body matches (else
  ``460`` and nothing of it is kept).
- The PATCH that completes the upload checks the content (declared sha256,
  a real image within the pixel limit) and answers ``422``/``460`` when it is
  not acceptable, with nothing attached to the photo.  Processing (EXIF,
  derivatives, hashes, quality flags) is a durable job (``server/photos.py``).

Every error has the one JSON error shape, and every response carries
``Tus-Resumable``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, TypeVar

from anyio import to_thread
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from schemas import errors
from schemas.observation import UploadState
from server import images, jobs, photos
from server.database import Steps, run_steps
from server.endpoint import Access, identify
from server.errors import error_response
from server.metrics import UPLOAD_BYTES
from server.models.accounts import User
from server.models.observations import Photo
from server.models.rows import insert_statement, placeholder
from server.models.sequence import next_seq, next_seq_steps
from server.models.uploads import Upload, UploadStatus
from server.openapi import raw_operation
from server.settings import Settings
from server.storage import WRITE_BUFFER, Storage

TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,expiration,checksum,termination"
CHECKSUMS: dict[str, Callable[[], Any]] = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}
OCTET_STREAM = "application/offset+octet-stream"
PREFIX = "/api/v1/uploads/"
LEASE_MS = 5_000
PROGRESS_SECONDS = 1.0
_METADATA_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Received while a PATCH is checked and its lease taken: one write block.
EARLY_BYTES = WRITE_BUFFER
_T = TypeVar("_T")
# Past 2**63 no offset or length is real, and databases refuse to store it.
_MAX_DIGITS = 18


_TUS_ERRORS = {400: "Bad header or metadata.", 401: "No or bad token.",
               403: "Another user's photo or upload.", 404: "No such upload or photo.",
               410: "Upload expired, terminated or refused.",
               412: "Tus-Resumable is not 1.0.0.", 413: "Over Tus-Max-Size or past the length.",
               415: "Wrong Content-Type or file type."}
_TUS_RESUMABLE = {"name": "Tus-Resumable", "required": True,
                  "schema": {"type": "string", "enum": [TUS_VERSION]}}
_CREATE_HEADERS = (
    _TUS_RESUMABLE,
    {"name": "Upload-Length", "required": True,
     "schema": {"type": "integer", "minimum": 1},
     "description": "The file's size in bytes (deferred lengths are not supported)."},
    {"name": "Upload-Metadata", "required": True, "schema": {"type": "string"},
     "description": "Comma-separated 'key base64(value)' pairs: photo_id (required), "
                    "filename, filetype, sha256."},
)
_PATCH_HEADERS = (
    _TUS_RESUMABLE,
    {"name": "Upload-Offset", "required": True, "schema": {"type": "integer", "minimum": 0},
     "description": "Where these bytes go: the offset the server has."},
    {"name": "Upload-Checksum", "required": False, "schema": {"type": "string"},
     "description": "'sha1 <base64 digest>' or 'sha256 <base64 digest>' of this body."},
)
OPENAPI: dict[str, dict[str, Any]] = {
    PREFIX: {
        "options": raw_operation("tus_options", "tus capabilities (Tus-Version, "
                                 "Tus-Extension, Tus-Max-Size)", Access.PUBLIC,
                                 {204: "Capabilities in headers."}, tags=("photos",)),
        "post": raw_operation("tus_create", "Create a tus upload for a photo record "
                              "(creation, creation-with-upload)", Access.USER,
                              {201: "Created; Location names the upload.", **_TUS_ERRORS,
                               409: "The photo is already uploaded.",
                               422: "Empty upload, or a refused file."}, tags=("photos",),
                              headers=_CREATE_HEADERS, body_type=OCTET_STREAM),
    },
    PREFIX + "{upload_id}": {
        "options": raw_operation("tus_options_upload", "tus capabilities", Access.PUBLIC,
                                 {204: "Capabilities in headers."}, tags=("photos",)),
        "head": raw_operation("tus_head", "Where an upload stands (Upload-Offset, "
                              "Upload-Length)", Access.USER,
                              {200: "State in headers.", **_TUS_ERRORS}, tags=("photos",),
                              headers=(_TUS_RESUMABLE,)),
        "patch": raw_operation("tus_patch", "Append bytes at Upload-Offset", Access.USER,
                               {204: "Stored; Upload-Offset is the new offset.", **_TUS_ERRORS,
                                409: "Upload-Offset does not match.",
                                422: "The completed file is not an acceptable image.",
                                423: "Another request is writing this upload.",
                                460: "Body does not match Upload-Checksum, or the file its "
                                     "declared sha256."}, tags=("photos",),
                               headers=_PATCH_HEADERS, body_type=OCTET_STREAM),
        "delete": raw_operation("tus_delete", "Terminate an unfinished upload", Access.USER,
                                {204: "Terminated.", **_TUS_ERRORS,
                                 409: "The upload is complete.",
                                 423: "A request is writing it."}, tags=("photos",),
                                headers=(_TUS_RESUMABLE,)),
    },
}


def tus_headers(**extra: str) -> dict[str, str]:
    return {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store", **extra}


def parse_metadata(header: str) -> dict[str, str]:
    """``Upload-Metadata``: comma-separated ``key base64value`` pairs."""
    pairs: dict[str, str] = {}
    if len(header) > 4096:
        raise errors.BadRequest("Upload-Metadata is longer than 4096 characters.")
    for item in filter(None, (part.strip() for part in header.split(","))):
        key, _, value = item.partition(" ")
        if not _METADATA_KEY.match(key) or key in pairs:
            raise errors.BadRequest(
                f"Upload-Metadata has a bad or repeated key {key[:64]!r}.",
                code="invalid_metadata",
            )
        try:
            pairs[key] = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):  # binascii.Error, or not ASCII at all
            raise errors.BadRequest(
                f"Upload-Metadata value of {key!r} is not base64 of UTF-8 text.",
                code="invalid_metadata",
            ) from None
        if "\x00" in pairs[key] and key != "filename":  # a file name is cleaned instead
            raise errors.BadRequest(
                f"Upload-Metadata value of {key!r} holds a NUL character.",
                code="invalid_metadata",
            )
    return pairs


def safe_filename(name: str) -> str:
    """The client's file name as data only (it never reaches a path)."""
    base = re.split(r"[\\/]", name)[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip(" .")
    return base[:200]


def _int_header(request: Request, name: str, *, required: bool = True) -> int | None:
    raw = request.headers.get(name)
    if raw is None:
        if required:
            raise errors.BadRequest(f"The {name} header is required.", code="missing_header")
        return None
    # ASCII digits only ("²".isdigit() is true), and few enough for int().
    if not (raw.isascii() and raw.isdigit()) or len(raw) > _MAX_DIGITS:
        raise errors.BadRequest(
            f"{name} must be a non-negative integer of at most {_MAX_DIGITS} digits.",
            code="invalid_header",
        )
    return int(raw)


def _expires(upload: Upload) -> str:
    return format_datetime(upload.expires_at.astimezone(UTC), usegmt=True)


class _TooLong(Exception):
    pass


class _EarlyBody:
    """A request body whose first block is received while the request is
    checked (``meanwhile``): authenticating, finding the upload and taking its
    write lease cost database round trips and a commit, and the bytes arrive
    during them instead of after.  At most about ``EARLY_BYTES`` (one write
    block) are held; nothing is written before the check has passed.
    Iterating it gives those bytes, then the rest of the body; a read error
    met early (a dropped connection) is raised where it would have been,
    after them."""

    def __init__(self, request: Request) -> None:
        self._stream = request.stream()
        self._early: list[bytes] = []
        self._error: Exception | None = None
        self._ended = False
        self._enough = False
        self._receiving: asyncio.Future[None] | None = None

    async def _receive(self) -> None:
        held = 0
        try:
            while not self._enough and held < EARLY_BYTES:
                chunk = await anext(self._stream)
                self._early.append(chunk)
                held += len(chunk)
        except StopAsyncIteration:
            self._ended = True
        except Exception as exc:  # raised again by __aiter__, after the early bytes
            self._error = exc

    async def meanwhile(self, check: Awaitable[_T]) -> _T:
        """``check``'s result, the body's first block received meanwhile."""
        self._receiving = asyncio.ensure_future(self._receive())
        try:
            result = await check
        except BaseException:
            await self.aclose()  # the request fails: the rest of its body is not read
            raise
        # The reading stops with the chunk it is waiting for (iterating waits
        # for that, under the write lease's renewal, not here).
        self._enough = True
        return result

    async def aclose(self) -> None:
        """Stop reading early (a request that ends before its body was read)."""
        if self._receiving is not None and not self._receiving.done():
            self._receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._receiving

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._receiving is not None:
            await self._receiving
        early, self._early = self._early, []
        for chunk in early:
            yield chunk
        if self._error is not None:
            raise self._error
        if self._ended:
            return
        async for chunk in self._stream:
            yield chunk


class TusServer:
    """The tus routes of one app; ``routes()`` goes into the app's route list."""

    def __init__(
        self, settings: Settings, storage: Storage, notify: Callable[[], None] = lambda: None
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.notify = notify

    def routes(self) -> list[Route]:
        return [
            Route(PREFIX, self._wrap(self.options), methods=["OPTIONS"], name="tus_options"),
            Route(PREFIX, self._wrap(self.create), methods=["POST"], name="tus_create"),
            Route(PREFIX + "{upload_id}", self._wrap(self.options), methods=["OPTIONS"],
                  name="tus_options_upload"),
            Route(PREFIX + "{upload_id}", self._wrap(self.head), methods=["HEAD"],
                  name="tus_head"),
            Route(PREFIX + "{upload_id}", self._wrap(self.patch), methods=["PATCH"],
                  name="tus_patch"),
            Route(PREFIX + "{upload_id}", self._wrap(self.delete), methods=["DELETE"],
                  name="tus_delete"),
        ]

    def _wrap(
        self, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                if request.method != "OPTIONS":
                    version = request.headers.get("tus-resumable")
                    if version != TUS_VERSION:
                        raise errors.PreconditionFailed(
                            f"Send 'Tus-Resumable: {TUS_VERSION}' (got {version!r}).",
                            headers={"Tus-Version": TUS_VERSION},
                        )
                return await handler(request)
            except errors.PhenosyncError as error:
                response = error_response(error)
                response.headers.update(tus_headers())
                return response

        return endpoint

    # --- helpers -----------------------------------------------------------

    async def _user(self, request: Request) -> User:
        user, _ = await identify(request)
        if user is None:
            raise errors.NotAuthenticated()
        return user

    async def _upload(self, request: Request, user: User) -> Upload:
        upload_id = request.path_params["upload_id"]
        upload = None
        if re.fullmatch(r"[0-9a-f]{32}", upload_id):
            upload = await Upload.get_or_none(id=upload_id)
        if upload is None:
            raise errors.NotFound("There is no upload at this address.")
        if upload.user_id != user.id:  # type: ignore[attr-defined]
            raise errors.PermissionDenied("This upload belongs to another user.")
        if upload.state in (UploadStatus.TERMINATED, UploadStatus.EXPIRED):
            raise errors.Gone(f"This upload was {upload.state}: start a new one.")
        if upload.state == UploadStatus.FAILED:
            raise errors.Gone("This upload's file was refused: start a new upload.")
        if upload.state == UploadStatus.RECEIVING and upload.expires_at <= datetime.now(UTC):
            raise errors.Gone("This upload expired: start a new one.")
        return upload

    def _new_expiry(self) -> datetime:
        return datetime.now(UTC) + timedelta(hours=self.settings.upload_expiry_hours)

    # --- OPTIONS -----------------------------------------------------------

    async def options(self, request: Request) -> Response:
        return Response(status_code=204, headers=tus_headers(**{
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": EXTENSIONS,
            "Tus-Max-Size": str(self.settings.upload_max_bytes),
            "Tus-Checksum-Algorithm": ",".join(CHECKSUMS),
        }))

    # --- POST (creation, creation-with-upload) -----------------------------

    async def create(self, request: Request) -> Response:
        body = _EarlyBody(request)
        try:
            upload, lease, headers = await body.meanwhile(self._create(request))
            if lease is not None:
                try:
                    checksum = self._check_body(request, upload, 0)
                except errors.PhenosyncError:
                    await Upload.filter(id=upload.id, lock_token=lease).update(
                        locked_until=0, lock_token=None)
                    raise
                offset = await self._write(request, upload, 0, lease, body, checksum)
                headers["Upload-Offset"] = str(offset)
        finally:
            await body.aclose()
        return Response(status_code=201, headers=headers)

    async def _create(self, request: Request) -> tuple[Upload, str | None, dict[str, str]]:
        """Check the creation request and record the upload (with the write
        lease when a body comes with it): the upload, the lease, the headers."""
        user = await self._user(request)
        length = _int_header(request, "upload-length", required=False)
        if length is None:
            raise errors.BadRequest(
                "Send Upload-Length (deferred lengths are not supported).",
                code="missing_header",
            )
        if length == 0:
            raise errors.ValidationFailed(
                "The file is empty (Upload-Length: 0): a photo has bytes.", code="empty_upload"
            )
        if length > self.settings.upload_max_bytes:
            raise errors.PayloadTooLarge(
                f"Upload-Length {length} is over the limit of "
                f"{self.settings.upload_max_bytes} bytes.",
                details={"max_bytes": self.settings.upload_max_bytes},
            )
        header = request.headers.get("upload-metadata", "")
        metadata = parse_metadata(header)
        photo_id = metadata.get("photo_id")
        if not photo_id:
            raise errors.ValidationFailed(
                "Upload-Metadata must name the photo record: 'photo_id <base64 id>'.",
                code="missing_photo_id",
            )
        filetype = metadata.get("filetype", "").lower()
        if filetype and filetype not in images.CONTENT_TYPES:
            raise errors.UnsupportedMediaType(
                f"A photo must be JPEG, PNG, WebP or HEIC/HEIF, not {filetype[:64]!r}.",
                details={"accepted": sorted(images.CONTENT_TYPES)},
            )
        declared = metadata.get("sha256", "").lower() or None
        if declared is not None and not _SHA256.match(declared):
            raise errors.BadRequest(
                "Upload-Metadata sha256 must be 64 hex digits.", code="invalid_metadata"
            )
        stored = {k: v for k, v in metadata.items() if k != "filename"}
        if "filename" in metadata:
            stored["filename"] = safe_filename(metadata["filename"])
        for key, value in stored.items():
            # PostgreSQL stores no NUL (the file name lost its control characters).
            if "\x00" in value:
                raise errors.BadRequest(
                    f"Upload-Metadata value of {key!r} has a NUL character.",
                    code="invalid_metadata",
                )
        body_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        content_length = _int_header(request, "content-length", required=False)
        with_body = body_type == OCTET_STREAM or (content_length or 0) > 0
        if with_body and body_type != OCTET_STREAM:
            raise errors.UnsupportedMediaType(
                f"A body sent with the creation request must be {OCTET_STREAM!r}."
            )
        upload_id = secrets.token_hex(16)
        # A body sent with the creation is written under a lease taken with it.
        lease = secrets.token_hex(8) if with_body else None
        conn = Upload._meta.db
        expires_at = self._new_expiry()
        locked_until = jobs.now_ms() + LEASE_MS if lease else 0

        def steps() -> Steps[str | None]:
            # Plain rows, not models, in one round trip (database.run_steps):
            # this runs for every photo (bench/photo_bench.py).
            p = functools.partial(placeholder, conn)
            rows = yield (
                'SELECT "user_id", "upload_state", "declared_sha256" FROM "photos"'
                f' WHERE "id" = {p(1)} AND "is_deleted" = {p(2)}',
                [photo_id, False],
            )
            if not rows:
                raise errors.NotFound(
                    f"There is no photo record {photo_id[:64]!r}: push it with sync first."
                )
            photo = rows[0]
            if photo["user_id"] != user.id:
                raise errors.PermissionDenied("This photo record belongs to another user.")
            if photo["upload_state"] in (UploadState.READY, UploadState.PROCESSING):
                raise errors.Conflict(
                    f"Photo {photo_id!r} is already uploaded.", code="already_uploaded"
                )
            if declared and photo["declared_sha256"] and declared != photo["declared_sha256"]:
                raise errors.ValidationFailed(
                    "The sha256 in Upload-Metadata differs from the photo record's.",
                    code="sha256_mismatch",
                )
            sha256: str | None = declared or photo["declared_sha256"]
            now = datetime.now(UTC)
            yield insert_statement(conn, Upload, {
                "id": upload_id, "photo_id": photo_id, "user_id": user.id,
                "length": length, "offset": 0, "metadata_header": header,
                "metadata": stored, "declared_sha256": sha256,
                "content_type": filetype or None, "state": UploadStatus.RECEIVING.value,
                "storage_key": f"uploads/{upload_id}", "expires_at": expires_at,
                "locked_until": locked_until, "lock_token": lease,
                "created_at": now, "updated_at": now,
            })
            if photo["upload_state"] != UploadState.UPLOADING:
                seq = yield from next_seq_steps()
                yield (
                    f'UPDATE "photos" SET "upload_state" = {p(1)}, "failure_code" = NULL,'
                    f' "updated_seq" = {p(2)} WHERE "id" = {p(3)}',
                    [UploadState.UPLOADING.value, seq, photo_id],
                )
            return sha256

        storage_key = f"uploads/{upload_id}"
        if lease is not None:
            declared_sha256 = await run_steps(conn, steps())
        else:
            # The file is made (its name synced) beside the transaction, each
            # waiting for the disk at the same time: the PATCH that follows
            # then syncs only its bytes, not the folder as well.  (A body
            # sent with the creation makes the file as it is written.)
            making = asyncio.ensure_future(self.storage.create(storage_key))
            try:
                declared_sha256 = await run_steps(conn, steps())
            except BaseException:
                await asyncio.gather(making, return_exceptions=True)
                with contextlib.suppress(OSError):
                    await self.storage.delete(storage_key)
                raise
            await making
        upload = Upload(
            id=upload_id, photo_id=photo_id, user_id=user.id, length=length, offset=0,
            metadata_header=header, metadata=stored, declared_sha256=declared_sha256,
            content_type=filetype or None, state=UploadStatus.RECEIVING,
            storage_key=storage_key, expires_at=expires_at,
            locked_until=locked_until, lock_token=lease,
        )
        headers = tus_headers(
            Location=PREFIX + upload_id, **{"Upload-Expires": _expires(upload)}
        )
        return upload, lease, headers

    # --- HEAD --------------------------------------------------------------

    async def head(self, request: Request) -> Response:
        user = await self._user(request)
        upload = await self._upload(request, user)
        headers = tus_headers(**{
            "Upload-Offset": str(upload.offset), "Upload-Length": str(upload.length),
        })
        if upload.metadata_header:
            headers["Upload-Metadata"] = upload.metadata_header
        if upload.state == UploadStatus.RECEIVING:
            headers["Upload-Expires"] = _expires(upload)
        return Response(status_code=200, headers=headers)

    # --- PATCH -------------------------------------------------------------

    async def patch(self, request: Request) -> Response:
        body_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if body_type != OCTET_STREAM:
            raise errors.UnsupportedMediaType(
                f"A PATCH body must be sent as 'Content-Type: {OCTET_STREAM}'."
            )
        offset = _int_header(request, "upload-offset")
        assert offset is not None
        body = _EarlyBody(request)
        try:
            upload, token, checksum = await body.meanwhile(self._lease(request, offset))
            offset = await self._write(request, upload, offset, token, body, checksum)
        finally:
            await body.aclose()
        headers = tus_headers(**{"Upload-Offset": str(offset)})
        if offset < upload.length:
            headers["Upload-Expires"] = _expires(upload)
        return Response(status_code=204, headers=headers)

    async def _lease(
        self, request: Request, offset: int
    ) -> tuple[Upload, str, tuple[str, bytes] | None]:
        """Authenticate, take the upload's write lease (one statement finds the
        user's upload receiving at ``offset`` with its lease free and takes
        it), and check the request against it: the upload, the lease token,
        the checksum to match.  When the lease cannot be had, say why."""
        user = await self._user(request)
        token = secrets.token_hex(8)
        upload_id = request.path_params["upload_id"]
        upload = None
        if re.fullmatch(r"[0-9a-f]{32}", upload_id):
            upload = await _take_lease(upload_id, user.id, offset, token)
        if upload is not None:
            try:
                if upload.expires_at <= datetime.now(UTC):
                    raise errors.Gone("This upload expired: start a new one.")
                return upload, token, self._check_body(request, upload, offset)
            except errors.PhenosyncError:
                await Upload.filter(id=upload.id, lock_token=token).update(
                    locked_until=0, lock_token=None)
                raise
        upload = await self._upload(request, user)
        if offset != upload.offset:
            raise errors.OffsetMismatch(
                f"Upload-Offset is {offset} but the server has {upload.offset} bytes.",
                details={"offset": upload.offset},
            )
        self._check_body(request, upload, offset)
        if upload.state != UploadStatus.RECEIVING:
            raise errors.Conflict("This upload is complete.", code="upload_complete")
        raise errors.Locked(
            "Another request is writing this upload: retry in a few seconds.",
            code="upload_locked",
        )

    def _check_body(
        self, request: Request, upload: Upload, offset: int
    ) -> tuple[str, bytes] | None:
        """The body's ``Upload-Checksum``, once its headers fit the upload."""
        checksum = self._checksum(request)
        room = upload.length - offset
        content_length = _int_header(request, "content-length", required=False)
        if content_length is not None and content_length > room:
            raise errors.PayloadTooLarge(
                f"The body ({content_length} bytes) runs past Upload-Length: "
                f"{room} bytes are left from offset {offset}.",
                code="upload_past_length",
                details={"offset": offset, "length": upload.length},
            )
        return checksum

    async def _write(
        self, request: Request, upload: Upload, offset: int, token: str, body: _EarlyBody,
        checksum: tuple[str, bytes] | None,
    ) -> int:
        """Stream the body to storage at ``offset`` under the write lease
        ``token``; returns the new offset.  Completes the upload when it is the
        last byte."""
        room = upload.length - offset
        mine = Upload.filter(id=upload.id, lock_token=token)
        progress = {"flushed": 0}
        received = 0
        digest = CHECKSUMS[checksum[0]]() if checksum else None
        # A body that is the whole file (the usual case) is hashed as it is
        # written, so completing it needs no second read; a resumed upload's
        # file is hashed again at the end.
        whole = hashlib.sha256() if offset == 0 and upload.declared_sha256 else None

        def observe(block: bytes | bytearray) -> None:  # in the writing thread
            if digest is not None:
                digest.update(block)
            if whole is not None:
                whole.update(block)

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal received  # the bytes handed to storage, all of them written
            async for chunk in body:
                if received + len(chunk) > room:
                    raise _TooLong()
                received += len(chunk)
                UPLOAD_BYTES.inc(len(chunk))
                yield chunk

        async def keep_lease() -> None:
            # Renew the lease, and (without a checksum to wait for) record
            # progress, so a dropped connection or a crash loses little.
            while True:
                await asyncio.sleep(PROGRESS_SECONDS)
                values: dict[str, Any] = {"locked_until": jobs.now_ms() + LEASE_MS}
                if digest is None:
                    # Never the whole length: the last byte is acknowledged
                    # only by the request that completes the upload (checked
                    # and handed to processing), so a client resuming after a
                    # crash always sends it again.
                    values["offset"] = offset + max(0, min(progress["flushed"], room - 1))
                await mine.update(**values)

        def flushed(total: int) -> None:
            progress["flushed"] = total

        # The content check of a completing upload runs once every byte is
        # written, while they are synced (its outcome, or none when it did not run).
        checked: list[images.ImageRefused | None] = []

        def check_written() -> None:  # in a worker thread
            if offset + received != upload.length:
                return
            try:
                _check_content(
                    self.storage, upload.storage_key, upload.declared_sha256,
                    whole.hexdigest() if whole else None, self.settings.max_image_pixels,
                )
            except images.ImageRefused as refused:
                checked.append(refused)
            else:
                checked.append(None)

        keeper = asyncio.create_task(keep_lease())
        error: errors.PhenosyncError | None = None
        written = 0
        try:
            try:
                written = await self.storage.write_at(
                    upload.storage_key, offset, chunks(), on_flush=flushed, observe=observe,
                    on_written=check_written,
                )
            except _TooLong:
                error = errors.PayloadTooLarge(
                    f"The body runs past Upload-Length: {room} bytes were left from "
                    f"offset {offset}.",
                    code="upload_past_length",
                    details={"offset": offset, "length": upload.length},
                )
            except ClientDisconnect:
                written = received if digest is None else 0
                # The connection is gone; keep what arrived (the file has it).
            if error is None and checksum is not None and digest is not None:
                if digest.digest() != checksum[1]:
                    error = errors.ChecksumMismatch(
                        f"The body does not match its {checksum[0]} Upload-Checksum: "
                        "send it again.",
                        details={"offset": offset},
                    )
        except BaseException:
            # An unexpected failure (disk full, cancellation): free the upload
            # at the offset recorded so far.
            await mine.update(locked_until=0, lock_token=None)
            raise
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        if error is not None:
            written = 0
        new_offset = offset + min(written, room)
        if new_offset != offset + received:  # what did not count is cut off
            await self.storage.truncate(upload.storage_key, new_offset)
        upload.offset = new_offset
        if new_offset == upload.length:
            await self._complete(upload, token, whole.hexdigest() if whole else None, checked)
        else:
            upload.expires_at = self._new_expiry()
            await mine.update(
                offset=new_offset, locked_until=0, lock_token=None,
                expires_at=upload.expires_at,
            )
        if error is not None:
            raise error
        return new_offset

    # --- DELETE (termination) ----------------------------------------------

    async def delete(self, request: Request) -> Response:
        user = await self._user(request)
        upload = await self._upload(request, user)
        if upload.state != UploadStatus.RECEIVING:
            raise errors.Conflict(
                "This upload is complete and cannot be terminated.", code="upload_complete"
            )
        now = jobs.now_ms()
        async with in_transaction() as conn:
            ended = await Upload.filter(
                Q(id=upload.id), Q(state=UploadStatus.RECEIVING),
                Q(locked_until__lt=now) | Q(lock_token=None),
            ).using_db(conn).update(state=UploadStatus.TERMINATED)
            if not ended:
                raise errors.Locked(
                    "A request is writing this upload: retry in a few seconds.",
                    code="upload_locked",
                )
            await _photo_waits_again(upload.photo_id, conn)  # type: ignore[attr-defined]
        await self.storage.delete(upload.storage_key)
        return Response(status_code=204, headers=tus_headers())

    def _checksum(self, request: Request) -> tuple[str, bytes] | None:
        header = request.headers.get("upload-checksum")
        if header is None:
            return None
        algorithm, _, value = header.strip().partition(" ")
        if algorithm not in CHECKSUMS:
            raise errors.BadRequest(
                f"Upload-Checksum algorithm {algorithm[:16]!r} is not supported; "
                f"use one of {', '.join(CHECKSUMS)}.",
                code="unsupported_checksum",
            )
        try:
            return algorithm, base64.b64decode(value.strip(), validate=True)
        except ValueError:  # binascii.Error, or not ASCII at all
            raise errors.BadRequest(
                "Upload-Checksum must be '<algorithm> <base64 digest>'.",
                code="invalid_header",
            ) from None

    async def _complete(
        self, upload: Upload, token: str, sha256: str | None,
        checked: list[images.ImageRefused | None],
    ) -> None:
        """All bytes are in (and on disk): check the content, so that the client
        hears about a bad file now, then in one transaction mark the upload
        complete and queue its processing (a durable job).  ``sha256`` is the
        file's hash when this request wrote all of it; ``checked`` the
        outcome of the check when it ran already (while the bytes were synced).

        A crash before the transaction leaves the upload receiving, at most at
        ``length - 1`` (see ``keep_lease``): the client sends the end again.
        """
        try:
            if not checked:
                await to_thread.run_sync(
                    _check_content, self.storage, upload.storage_key,
                    upload.declared_sha256, sha256, self.settings.max_image_pixels,
                )
            elif checked[0] is not None:
                raise checked[0]
        except images.ImageRefused as refused:
            await photos.mark_failed(upload.id, refused.code, self.storage)
            if refused.code == "sha256_mismatch":
                raise errors.ChecksumMismatch(
                    refused.message, code="sha256_mismatch"
                ) from None
            raise errors.InvalidPhoto(refused.message, details={"reason": refused.code}) from None
        conn = Upload._meta.db
        upload_id, length, photo_id = upload.id, upload.length, upload.photo_id  # type: ignore[attr-defined]

        def steps() -> Steps[None]:
            p = functools.partial(placeholder, conn)
            rows = yield (
                f'UPDATE "uploads" SET "offset" = {p(1)}, "state" = {p(2)}, "locked_until" = 0,'
                f' "lock_token" = NULL WHERE "id" = {p(3)} AND "lock_token" = {p(4)}'
                ' RETURNING "id"',
                [length, UploadStatus.COMPLETE.value, upload_id, token],
            )
            if not rows:
                raise errors.Locked("The write lease ran out: resume the upload.")
            seq = yield from next_seq_steps()
            yield (
                f'UPDATE "photos" SET "upload_state" = {p(1)}, "updated_seq" = {p(2)}'
                f' WHERE "id" = {p(3)}',
                [UploadState.PROCESSING.value, seq, photo_id],
            )
            yield jobs.enqueue_step(conn, photos.JOB_KIND, {"upload_id": upload_id})

        await run_steps(conn, steps())
        self.notify()


async def _take_lease(upload_id: str, user_id: int, offset: int, token: str) -> Upload | None:
    """The user's upload, receiving at ``offset`` with its write lease free,
    leased to ``token`` in one statement; None when there is no such upload."""
    conn = Upload._meta.db
    p = functools.partial(placeholder, conn)
    now = jobs.now_ms()

    def steps() -> Steps[list[dict[str, Any]]]:
        return (yield (
            f'UPDATE "uploads" SET "locked_until" = {p(1)}, "lock_token" = {p(2)}'
            f' WHERE "id" = {p(3)} AND "user_id" = {p(4)} AND "state" = {p(5)}'
            f' AND "offset" = {p(6)} AND ("locked_until" < {p(7)} OR "lock_token" IS NULL)'
            " RETURNING *",
            [now + LEASE_MS, token, upload_id, user_id, UploadStatus.RECEIVING.value, offset, now],
        ))

    # Unsynced: a lease need not outlive a power cut (its holder would not).
    rows = await run_steps(conn, steps(), synced=False)
    return Upload._init_from_db(**rows[0]) if rows else None


def _check_content(
    storage: Storage, key: str, declared: str | None, computed: str | None, max_pixels: int
) -> None:
    with storage.open(key) as handle:
        if declared is not None:
            actual = computed or images.sha256_of(handle)[0]
            if actual != declared:
                raise images.ImageRefused(
                    "sha256_mismatch",
                    f"The file's sha256 is {actual}, not the declared {declared}.",
                )
        images.inspect(handle, max_pixels)  # headers and structure: fast


async def sweep_expired(storage: Storage) -> int:
    """Expire unfinished uploads past ``expires_at`` (and not being written):
    their bytes are deleted and the photo goes back to ``pending``."""
    count = 0
    now = datetime.now(UTC)
    stale = await Upload.filter(
        state=UploadStatus.RECEIVING, expires_at__lt=now, locked_until__lt=jobs.now_ms()
    ).limit(500)
    for upload in stale:
        async with in_transaction() as conn:
            expired = await Upload.filter(
                id=upload.id, state=UploadStatus.RECEIVING
            ).using_db(conn).update(state=UploadStatus.EXPIRED)
            if not expired:
                continue
            await _photo_waits_again(upload.photo_id, conn)  # type: ignore[attr-defined]
        await storage.delete(upload.storage_key)
        count += 1
    return count


async def _photo_waits_again(photo_id: str, conn: BaseDBAsyncClient) -> None:
    """An upload ended without content (terminated or expired): unless another
    upload of the photo is still receiving, the photo waits for one again, with
    a new sync number so the device learns it."""
    busy = await Upload.filter(
        photo_id=photo_id, state=UploadStatus.RECEIVING
    ).using_db(conn).exists()
    if not busy:
        seq = await next_seq(conn)
        await Photo.filter(
            id=photo_id, upload_state=UploadState.UPLOADING
        ).using_db(conn).update(upload_state=UploadState.PENDING, updated_seq=seq)

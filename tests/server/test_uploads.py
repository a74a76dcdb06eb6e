"""tus 1.0.0 at /api/v1/uploads/, through the ASGI app (real clients: test_tus_clients.py)."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from schemas.observation import UploadState
from server import jobs, uploads
from server.models.jobs import Job
from server.models.observations import Photo, QualityFlag
from server.models.uploads import Upload, UploadStatus
from server.storage import LocalStorage
from tests.factories import auth, make_user
from tests.factories_photos import (
    encoded,
    garbage_exif_jpeg,
    jpeg,
    make_photo,
    png_bomb,
    run_jobs,
    sha256,
)

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Content-Type": "application/offset+octet-stream"}


def metadata(**pairs: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in pairs.items())


async def create(
    client: httpx.AsyncClient, token: str, photo_id: str, length: int, *,
    body: bytes | None = None, **meta: str,
) -> httpx.Response:
    headers = {**TUS, **auth(token), "Upload-Length": str(length),
               "Upload-Metadata": metadata(photo_id=photo_id, **meta)}
    if body is not None:
        headers.update(OCTET)
    return await client.post("/api/v1/uploads/", headers=headers, content=body)


async def patch(
    client: httpx.AsyncClient, token: str, location: str, offset: int, body: bytes,
    **headers: str,
) -> httpx.Response:
    return await client.patch(location, content=body, headers={
        **TUS, **OCTET, **auth(token), "Upload-Offset": str(offset), **headers})


async def upload_file(client: httpx.AsyncClient, token: str, photo_id: str, data: bytes,
                      chunk: int = 64 * 1024) -> httpx.Response:
    r = await create(client, token, photo_id, len(data), filetype="image/jpeg")
    assert r.status_code == 201, r.text
    location, offset = r.headers["Location"], 0
    while offset < len(data):
        r = await patch(client, token, location, offset, data[offset : offset + chunk])
        if r.status_code != 204:
            return r
        offset = int(r.headers["Upload-Offset"])
    return r


async def test_options_announces_the_server_capabilities(client: httpx.AsyncClient) -> None:
    r = await client.options("/api/v1/uploads/")
    assert r.status_code == 204
    assert r.headers["Tus-Version"] == "1.0.0"
    assert set(r.headers["Tus-Extension"].split(",")) == {
        "creation", "creation-with-upload", "expiration", "checksum", "termination"}
    assert r.headers["Tus-Checksum-Algorithm"] == "sha1,sha256"
    assert int(r.headers["Tus-Max-Size"]) == 50 * 1024 * 1024


async def test_a_photo_uploads_in_chunks_and_is_processed(
    client: httpx.AsyncClient, db: Starlette
) -> None:
    user, token = await make_user()
    photo = await make_photo(user)
    seq_before = photo.updated_seq
    data = jpeg(size=(2400, 1600))
    r = await create(client, token, photo.id, len(data), filename="IMG_0001.JPG",
                     filetype="image/jpeg", sha256=sha256(data))
    assert r.status_code == 201, r.text
    location = r.headers["Location"]
    assert location.startswith("/api/v1/uploads/") and "://" not in location
    assert "Upload-Expires" in r.headers and r.headers["Tus-Resumable"] == "1.0.0"
    uploading = await Photo.get(id=photo.id)
    assert uploading.upload_state == UploadState.UPLOADING
    assert uploading.updated_seq > seq_before
    r = await patch(client, token, location, 0, data[:100_000])
    assert (r.status_code, r.headers["Upload-Offset"]) == (204, "100000")
    head = await client.head(location, headers={**TUS, **auth(token)})
    assert head.headers["Upload-Offset"] == "100000"
    assert head.headers["Upload-Length"] == str(len(data))
    assert head.headers["Cache-Control"] == "no-store"
    assert "photo_id" in head.headers["Upload-Metadata"]
    r = await patch(client, token, location, 100_000, data[100_000:])
    assert (r.status_code, r.headers["Upload-Offset"]) == (204, str(len(data)))
    assert (await Photo.get(id=photo.id)).upload_state == UploadState.PROCESSING
    assert await run_jobs(db) == 1
    ready = await Photo.get(id=photo.id)
    assert ready.upload_state == UploadState.READY
    assert ready.sha256 == sha256(data) and ready.storage_key == f"originals/{ready.sha256}"
    assert (ready.width, ready.height, ready.content_type) == (2400, 1600, "image/jpeg")
    assert ready.derivative_sizes == [320, 1024, 2048]
    assert ready.exif and ready.exif["make"] == "Phenocam"
    assert ready.exif_latitude == pytest.approx(52.09, abs=1e-4)
    assert ready.updated_seq > uploading.updated_seq
    storage = db.state.storage
    assert await storage.size(f"uploads/{location.rsplit('/', 1)[1]}") is None
    assert await storage.size(ready.storage_key) == len(data)
    assert not await QualityFlag.exists()  # time and place agree, no duplicate
    record = (await client.get(f"/api/v1/photos/{photo.id}", headers=auth(token))).json()
    assert record["upload_state"] == "ready"
    assert record["derivatives"]["320"] == f"/api/v1/photos/{photo.id}/derivatives/320"
    assert record["exif"]["taken_at"] == "2024-04-01T10:05:00+02:00"


async def test_creation_with_upload(client: httpx.AsyncClient, db: Starlette) -> None:
    user, token = await make_user()
    photo = await make_photo(user)
    data = encoded("PNG")
    r = await create(client, token, photo.id, len(data), body=data[:1000])
    assert (r.status_code, r.headers["Upload-Offset"]) == (201, "1000")
    r = await patch(client, token, r.headers["Location"], 1000, data[1000:])
    assert r.status_code == 204
    await run_jobs(db)
    assert (await Photo.get(id=photo.id)).content_type == "image/png"


async def test_checksums_are_checked_per_request(client: httpx.AsyncClient) -> None:
    user, token = await make_user()
    photo = await make_photo(user)
    data = jpeg()
    r = await create(client, token, photo.id, len(data))
    location = r.headers["Location"]
    part = data[:5000]
    good_sha1 = base64.b64encode(hashlib.sha1(part).digest()).decode()
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    r = await patch(client, token, location, 0, part, **{"Upload-Checksum": f"sha256 {wrong}"})
    assert r.status_code == 460 and r.json()["error"]["code"] == "checksum_mismatch"
    assert r.headers["Tus-Resumable"] == "1.0.0"
    head = await client.head(location, headers={**TUS, **auth(token)})
    assert head.headers["Upload-Offset"] == "0"  # nothing of the bad body counts
    r = await patch(client, token, location, 0, part, **{"Upload-Checksum": f"sha1 {good_sha1}"})
    assert (r.status_code, r.headers["Upload-Offset"]) == (204, "5000")
    r = await patch(client, token, location, 5000, b"x", **{"Upload-Checksum": "md5 AAAA"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_checksum"


async def test_protocol_errors(client: httpx.AsyncClient) -> None:
    user, token = await make_user()
    photo = await make_photo(user)
    data = jpeg()
    r = await create(client, token, photo.id, len(data))
    location = r.headers["Location"]
    await patch(client, token, location, 0, data[:1000])
    cases: list[tuple[httpx.Response, int, str]] = [
        (await patch(client, token, location, 500, data[500:1500]), 409, "offset_mismatch"),
        (await client.patch(location, content=b"x", headers={
            **TUS, **auth(token), "Upload-Offset": "1000", "Content-Type": "image/jpeg"}),
         415, "unsupported_media_type"),
        (await client.patch(location, content=b"x", headers={
            **OCTET, **auth(token), "Upload-Offset": "1000", "Tus-Resumable": "0.2.2"}),
         412, "unsupported_version"),
        (await client.patch(location, content=b"x", headers={**TUS, **OCTET, **auth(token)}),
         400, "missing_header"),
        (await client.patch(location, content=b"x", headers={
            **TUS, **OCTET, "Upload-Offset": "1000"}), 401, "not_authenticated"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.text
        assert set(response.json()) == {"error"}
        assert response.json()["error"]["code"] == code
        assert response.headers["Tus-Resumable"] == "1.0.0"
    assert (await patch(client, token, location, 1000, data[1000:])).status_code == 204


async def test_one_writer_at_a_time(client: httpx.AsyncClient) -> None:
    user, token = await make_user()
    photo = await make_photo(user)
    data = jpeg()
    location = (await create(client, token, photo.id, len(data))).headers["Location"]
    upload_id = location.rsplit("/", 1)[1]
    # Another request holds the write lease.
    await Upload.filter(id=upload_id).update(
        locked_until=jobs.now_ms() + 60_000, lock_token="someone")
    r = await patch(client, token, location, 0, data)
    assert r.status_code == 423 and r.json()["error"]["code"] == "upload_locked"
    assert (await client.delete(location, headers={**TUS, **auth(token)})).status_code == 423
    # Its lease runs out (the writer died): the upload is free again.
    await Upload.filter(id=upload_id).update(locked_until=jobs.now_ms() - 1)
    assert (await patch(client, token, location, 0, data)).status_code == 204


def pieces(data: bytes, size: int = 64 * 1024) -> Any:
    async def gen() -> Any:
        for start in range(0, len(data), size):
            yield data[start : start + size]
    return gen()


async def test_a_body_larger_than_the_early_block_is_stored_exactly(
    client: httpx.AsyncClient, db: Starlette,
) -> None:
    """The first block arrives while the lease is taken, the rest after it:
    every byte lands once, in order, at its offset (creation-with-upload too)."""
    user, token = await make_user()
    data = os.urandom(2 * uploads.EARLY_BYTES + 12345)
    location = (await create(client, token, (await make_photo(user)).id,
                             len(data) + 10)).headers["Location"]
    r = await client.patch(location, content=pieces(data), headers={
        **TUS, **OCTET, **auth(token), "Upload-Offset": "0"})
    assert r.status_code == 204 and r.headers["Upload-Offset"] == str(len(data))
    key = f"uploads/{location.rsplit('/', 1)[1]}"
    with db.state.storage.open(key) as handle:
        assert handle.read() == data
    r = await client.post("/api/v1/uploads/", content=pieces(data), headers={
        **TUS, **OCTET, **auth(token), "Upload-Length": str(len(data) + 10),
        "Upload-Metadata": metadata(photo_id=(await make_photo(user)).id)})
    assert r.status_code == 201 and r.headers["Upload-Offset"] == str(len(data))
    with db.state.storage.open(f"uploads/{r.headers['Location'].rsplit('/', 1)[1]}") as handle:
        assert handle.read() == data


async def test_a_refused_patch_writes_nothing_of_the_body_it_began_to_receive(
    client: httpx.AsyncClient, db: Starlette,
) -> None:
    user, token = await make_user()
    _, stranger = await make_user()
    data = os.urandom(2 * uploads.EARLY_BYTES)
    location = (await create(client, token, (await make_photo(user)).id,
                             len(data))).headers["Location"]
    upload_id = location.rsplit("/", 1)[1]
    await Upload.filter(id=upload_id).update(
        locked_until=jobs.now_ms() + 60_000, lock_token="someone")
    refusals = [(token, "0", 423), (stranger, "0", 403), (token, "5", 409)]
    for who, offset, status in refusals:
        r = await client.patch(location, content=pieces(data), headers={
            **TUS, **OCTET, **auth(who), "Upload-Offset": offset})
        assert r.status_code == status, r.text
    # The creation made the file; no refused PATCH wrote to it.
    assert await db.state.storage.size(f"uploads/{upload_id}") == 0
    upload = await Upload.get(id=upload_id)
    assert upload.offset == 0 and upload.lock_token == "someone"


async def test_termination(client: httpx.AsyncClient, db: Starlette) -> None:
    user, token = await make_user()
    photo = await make_photo(user)
    data = jpeg()
    location = (await create(client, token, photo.id, len(data))).headers["Location"]
    await patch(client, token, location, 0, data[:1000])
    r = await client.delete(location, headers={**TUS, **auth(token)})
    assert r.status_code == 204
    assert (await Photo.get(id=photo.id)).upload_state == UploadState.PENDING
    assert await db.state.storage.size(f"uploads/{location.rsplit('/', 1)[1]}") is None
    head = await client.head(location, headers={**TUS, **auth(token)})
    assert head.status_code == 410
    assert (await patch(client, token, location, 1000, data[1000:])).status_code == 410


async def test_expired_uploads_are_swept(client: httpx.AsyncClient, db: Starlette) -> None:
    user, token = await make_user()
    photo = await make_photo(user)
    data = jpeg()
    location = (await create(client, token, photo.id, len(data))).headers["Location"]
    await patch(client, token, location, 0, data[:1000])
    upload_id = location.rsplit("/", 1)[1]
    await Upload.filter(id=upload_id).update(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert (await client.head(location, headers={**TUS, **auth(token)})).status_code == 410
    assert await uploads.sweep_expired(db.state.storage) == 1
    assert (await Upload.get(id=upload_id)).state == UploadStatus.EXPIRED
    assert await db.state.storage.size(f"uploads/{upload_id}") is None
    assert (await Photo.get(id=photo.id)).upload_state == UploadState.PENDING
    # The device starts over.
    assert (await upload_file(client, token, photo.id, data)).status_code == 204


# --- bad input: a clear 4xx, nothing half-attached -----------------------------


async def assert_nothing_attached(photo_id: str) -> None:
    photo = await Photo.get(id=photo_id)
    assert photo.upload_state in (UploadState.PENDING, UploadState.UPLOADING, UploadState.FAILED)
    assert photo.sha256 is None and photo.storage_key is None and not photo.derivative_sizes
    assert not await QualityFlag.exists()


@pytest.mark.parametrize(
    "data,reason",
    [
        (jpeg()[:-3000], "corrupt_image"),
        (b"this is not a photo, just text named holiday.jpg\n" * 30, "not_an_image"),
        (png_bomb(8000, 8000), "image_too_large"),
    ],
    ids=["truncated-jpeg", "text-named-jpg", "decompression-bomb"],
)
async def test_bad_files_are_refused_on_the_last_patch(
    client: httpx.AsyncClient, db: Starlette, data: bytes, reason: str
) -> None:
    user, token = await make_user()
    photo = await make_photo(user)
    r = await upload_file(client, token, photo.id, data)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_photo"
    assert r.json()["error"]["details"]["reason"] == reason
    assert (await Photo.get(id=photo.id)).failure_code == reason
    await run_jobs(db)  # the queued job finds the upload refused and does nothing
    await assert_nothing_attached(photo.id)
    assert (await Photo.get(id=photo.id)).upload_state == UploadState.FAILED
    # A new upload of a good file is accepted.
    assert (await upload_file(client, token, photo.id, jpeg())).status_code == 204
    await run_jobs(db)
    assert (await Photo.get(id=photo.id)).upload_state == UploadState.READY


# One PATCH with the whole file is hashed as it is written; a file sent in
# parts is hashed again when it completes.
@pytest.mark.parametrize("chunk", [64 * 1024, 10**9], ids=["in-parts", "one-patch"])
async def test_a_declared_sha256_that_does_not_match_is_460(
    client: httpx.AsyncClient, db: Starlette, chunk: int
) -> None:
    user, token = await make_user()
    data = jpeg()
    photo = await make_photo(user, declared_sha256=sha256(b"something else"))
    r = await upload_file(client, token, photo.id, data, chunk=chunk)
    assert r.status_code == 460 and r.json()["error"]["code"] == "sha256_mismatch"
    await run_jobs(db)
    await assert_nothing_attached(photo.id)
    photo = await make_photo(user, declared_sha256=sha256(data))
    assert (await upload_file(client, token, photo.id, data, chunk=chunk)).status_code == 204


async def test_malformed_exif_is_accepted_without_exif(
    client: httpx.AsyncClient, db: Starlette
) -> None:
    user, token = await make_user()
    photo = await make_photo(user)
    assert (await upload_file(client, token, photo.id, garbage_exif_jpeg())).status_code == 204
    await run_jobs(db)
    ready = await Photo.get(id=photo.id)
    assert ready.upload_state == UploadState.READY
    assert ready.exif_taken_at is None and ready.exif_latitude is None


async def test_a_creation_makes_the_upload_file_beside_its_transaction(
    client: httpx.AsyncClient, db: Starlette
) -> None:
    """The file is made, its name synced, by the POST (the PATCH then syncs
    only its bytes); a refused creation leaves none behind."""
    user, token = await make_user()
    photo = await make_photo(user, declared_sha256="0" * 64)
    files = set(db.state.storage.keys())
    r = await create(client, token, photo.id, 10)
    assert r.status_code == 201, r.text
    key = f"uploads/{r.headers['Location'].rsplit('/', 1)[1]}"
    assert isinstance(db.state.storage, LocalStorage)
    assert await db.state.storage.size(key) == 0
    # Refused inside the transaction, while the file was being made: it is removed.
    r = await create(client, token, photo.id, 10, sha256="1" * 64)
    assert r.json()["error"]["code"] == "sha256_mismatch", r.text
    assert set(db.state.storage.keys()) - files == {(key, 0)}


async def test_refused_creations(client: httpx.AsyncClient, db: Starlette) -> None:
    user, token = await make_user()
    other, other_token = await make_user()
    photo = await make_photo(user)
    theirs = await make_photo(other)
    files = set(db.state.storage.keys())
    cases: list[tuple[httpx.Response, int, str]] = [
        (await create(client, token, photo.id, 0), 422, "empty_upload"),
        (await create(client, token, photo.id, 51 * 1024 * 1024), 413, "payload_too_large"),
        (await create(client, token, "no-such-photo", 10), 404, "not_found"),
        (await create(client, token, theirs.id, 10), 403, "permission_denied"),
        (await create(client, token, photo.id, 10, filetype="text/html"),
         415, "unsupported_media_type"),
        (await create(client, token, photo.id, 10, sha256="xyz"), 400, "invalid_metadata"),
        (await client.post("/api/v1/uploads/", headers={
            **TUS, **auth(token), "Upload-Length": "10",
            "Upload-Metadata": "photo_id !!notbase64"}), 400, "invalid_metadata"),
        (await client.post("/api/v1/uploads/", headers={
            **TUS, **auth(token), "Upload-Length": "10"}), 422, "missing_photo_id"),
        (await client.post("/api/v1/uploads/", headers={
            **TUS, **auth(token), "Upload-Defer-Length": "1",
            "Upload-Metadata": metadata(photo_id=photo.id)}), 400, "missing_header"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code, response.text
    assert not await Upload.exists()
    assert set(db.state.storage.keys()) == files  # no file made for a refused creation
    assert (await Photo.get(id=photo.id)).upload_state == UploadState.PENDING


async def test_more_bytes_than_declared_and_patch_past_the_length(
    client: httpx.AsyncClient,
) -> None:
    user, token = await make_user()
    photo = await make_photo(user)
    data = jpeg()
    location = (await create(client, token, photo.id, len(data))).headers["Location"]
    r = await patch(client, token, location, 0, data + b"extra bytes")
    assert r.status_code == 413 and r.json()["error"]["code"] == "upload_past_length"
    head = await client.head(location, headers={**TUS, **auth(token)})
    assert head.headers["Upload-Offset"] == "0"

    async def no_length() -> Any:  # a chunked body: no Content-Length to check first
        yield data[:2000]
        yield data[2000:] + b"more than declared"

    r = await client.patch(location, content=no_length(), headers={
        **TUS, **OCTET, **auth(token), "Upload-Offset": "0"})
    assert r.status_code == 413
    assert (await client.head(location, headers={**TUS, **auth(token)})).headers[
        "Upload-Offset"] == "0"
    assert (await patch(client, token, location, 0, data)).status_code == 204
    r = await patch(client, token, location, len(data), b"past the end")
    assert r.status_code == 413


async def test_unknown_and_foreign_uploads(client: httpx.AsyncClient) -> None:
    user, token = await make_user()
    _, stranger = await make_user()
    photo = await make_photo(user)
    location = (await create(client, token, photo.id, 100)).headers["Location"]
    for path in ("/api/v1/uploads/0123456789abcdef0123456789abcdef",
                 "/api/v1/uploads/..%2F..%2Fsecret_key", "/api/v1/uploads/nope"):
        r = await client.head(path, headers={**TUS, **auth(token)})
        assert r.status_code == 404
        r = await patch(client, token, path, 0, b"x")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert (await client.head(location, headers={**TUS, **auth(stranger)})).status_code == 403
    r = await patch(client, stranger, location, 0, b"x")
    assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied"
    r = await client.delete(location, headers={**TUS, **auth(stranger)})
    assert r.status_code == 403


async def test_a_filename_never_reaches_a_path(client: httpx.AsyncClient, db: Starlette) -> None:
    user, token = await make_user()
    photo = await make_photo(user)
    data = jpeg()
    r = await create(client, token, photo.id, len(data),
                     filename="../../../../etc/passwd\x00.jpg")
    upload_id = r.headers["Location"].rsplit("/", 1)[1]
    upload = await Upload.get(id=upload_id)
    assert upload.storage_key == f"uploads/{upload_id}"
    assert upload.metadata["filename"] == "passwd.jpg"
    assert (await patch(client, token, r.headers["Location"], 0, data)).status_code == 204
    await run_jobs(db)
    media = db.state.settings.media_dir
    assert all(media in p.parents for p in media.rglob("*"))
    assert not list(media.rglob("*passwd*"))


async def test_an_uploaded_photo_cannot_be_uploaded_again(
    client: httpx.AsyncClient, db: Starlette
) -> None:
    user, token = await make_user()
    photo = await make_photo(user)
    assert (await upload_file(client, token, photo.id, jpeg())).status_code == 204
    await run_jobs(db)
    r = await create(client, token, photo.id, 100)
    assert r.status_code == 409 and r.json()["error"]["code"] == "already_uploaded"


async def test_processing_survives_a_crashed_worker(
    client: httpx.AsyncClient, db: Starlette
) -> None:
    user, token = await make_user()
    photo = await make_photo(user)
    assert (await upload_file(client, token, photo.id, jpeg())).status_code == 204
    job = await jobs.claim(db.state.database, "worker-that-dies")
    assert job is not None  # ... and the process dies before it finishes
    assert await run_jobs(db) == 0  # the lease still holds
    await Job.filter(id=job.id).update(locked_until=jobs.now_ms() - 1)
    assert await run_jobs(db) == 1
    assert (await Photo.get(id=photo.id)).upload_state == UploadState.READY


HOSTILE_NAMES = ["../escaped", "../../escaped", "..\\..\\escaped", "%2e%2e%2fescaped",
                 "..%2F..%2Fescaped", "/tmp/escaped", "escaped\x00.jpg", "./../escaped",
                 "uploads/../../escaped", "....//....//escaped"]


def _outside(db: Starlette) -> dict[str, bytes]:
    """Every file in the data directory but the media under it (and the
    releases and database files, which the server writes on purpose)."""
    settings = db.state.settings
    root = settings.media_dir.parent
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and settings.media_dir not in p.parents
            and settings.releases_dir not in p.parents}


async def test_hostile_names_never_leave_the_media_directory(
    client: httpx.AsyncClient, db: Starlette
) -> None:
    """Path traversal in every name a client controls: the file name and the
    photo id in Upload-Metadata, the upload id in the address, the photo id
    in the media addresses (encoded, absolute, NUL).  Nothing is created or
    read outside the media directory, and no request is a 5xx."""
    media = db.state.settings.media_dir
    secret = media.parent / "escaped"
    secret.write_bytes(b"outside the media directory")
    user, token = await make_user()
    photo = await make_photo(user)
    before = _outside(db)
    data = jpeg()
    for name in HOSTILE_NAMES:
        # As the file name: data only, the upload is stored under its own id.
        r = await create(client, token, photo.id, len(data), filename=name)
        assert r.status_code == 201, r.text
        upload = await Upload.get(id=r.headers["Location"].rsplit("/", 1)[1])
        assert upload.storage_key == f"uploads/{upload.id}"
        assert "/" not in upload.metadata["filename"] and "\x00" not in upload.metadata["filename"]
        assert (await client.delete(r.headers["Location"],
                                    headers={**TUS, **auth(token)})).status_code == 204
        # As the photo id: no such photo (or a refused value), nothing stored.
        r = await create(client, token, name, len(data), body=data)
        assert r.status_code in (400, 404), (name, r.text)
        quoted = name.replace("\x00", "%00")
        for path in (f"/api/v1/uploads/{quoted}", f"/api/v1/photos/{quoted}",
                     f"/api/v1/photos/{quoted}/original",
                     f"/api/v1/photos/{quoted}/derivatives/320",
                     f"/api/v1/photos/{photo.id}/derivatives/{quoted}",
                     f"/datasets/1.0.0/{quoted}", f"/review/static/{quoted}"):
            for method in ("GET", "HEAD", "PATCH", "DELETE"):
                r = await client.request(method, path, content=b"x", headers={
                    **TUS, **OCTET, **auth(token), "Upload-Offset": "0"})
                assert r.status_code in (307, 400, 404, 405), (method, path, r.status_code)
                assert b"outside the media" not in r.content
    assert (await upload_file(client, token, photo.id, data)).status_code == 204
    await run_jobs(db)
    assert _outside(db) == before
    assert all(media in p.parents for p in media.rglob("*"))
    assert not [p for p in media.rglob("*") if "escaped" in p.name]


async def test_a_link_planted_in_the_media_directory_is_not_followed(
    client: httpx.AsyncClient, db: Starlette
) -> None:
    """Should a symbolic link get into the media directory (a doctored backup,
    a careless operator), no upload writes through it and no download reads
    through it."""
    media = db.state.settings.media_dir
    outside = media.parent / "outside"
    outside.mkdir(exist_ok=True)
    target = outside / "victim"
    target.write_bytes(b"do not overwrite")
    user, token = await make_user()
    # An upload whose file is replaced by a link to a file outside.
    photo = await make_photo(user)
    r = await create(client, token, photo.id, 1000)
    upload = await Upload.get(id=r.headers["Location"].rsplit("/", 1)[1])
    path = media / upload.storage_key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    path.symlink_to(target)
    transport = httpx.ASGITransport(app=db, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as raw:
        r = await patch(raw, token, r.headers["Location"], 0, b"evil" * 10)
    assert r.status_code == 500  # the media directory was tampered with: a server fault
    assert target.read_bytes() == b"do not overwrite"
    # A ready photo whose original and derivatives are replaced by links outside.
    ready = await make_photo(user)
    data = jpeg(seed=7)
    assert (await upload_file(client, token, ready.id, data)).status_code == 204
    await run_jobs(db)
    ready = await Photo.get(id=ready.id)
    original = media / str(ready.storage_key)
    original.unlink()
    original.symlink_to(target)
    derivatives = media / "derivatives" / str(ready.sha256)
    shutil.rmtree(derivatives)
    (outside / "320.jpg").write_bytes(b"do not serve")
    derivatives.symlink_to(outside, target_is_directory=True)
    try:
        r = await client.get(f"/api/v1/photos/{ready.id}/original", headers=auth(token))
        assert r.status_code == 404 and r.json()["error"]["code"] == "file_missing"
        r = await client.get(f"/api/v1/photos/{ready.id}/derivatives/320")
        assert r.status_code == 404 and b"do not serve" not in r.content
        assert target.read_bytes() == b"do not overwrite"
    finally:  # the media directory is the session's: later tests store this image too
        for link in (original, derivatives, path):
            link.unlink(missing_ok=True)

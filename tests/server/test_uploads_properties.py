"""Property-based: the tus request headers (server/uploads.py) are parsed to a
value or refused with a documented 4xx error, whatever a client sends."""

from __future__ import annotations

import asyncio
import base64
import hashlib

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import Request

from schemas import errors
from server import uploads
from server.storage import LocalStorage
from tests.factories import auth, make_user
from tests.factories_photos import make_photo
from tests.properties import FAST, HEADER_TEXT, REQUESTS, call

KEYS = st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True)


def request(**headers: str) -> Request:
    raw = [(k.replace("_", "-").lower().encode(), v.encode("latin-1"))
           for k, v in headers.items()]
    return Request({"type": "http", "method": "PATCH", "path": "/", "headers": raw})


@FAST
@given(st.dictionaries(KEYS, st.text(), max_size=6))
def test_metadata_round_trips(pairs: dict[str, str]) -> None:
    """Text round-trips, except a NUL outside the file name, which is refused
    (no database text holds one; a file name is cleaned later)."""
    header = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in pairs.items())
    if len(header) > 4096:
        return
    if any("\x00" in v and k != "filename" for k, v in pairs.items()):
        with pytest.raises(errors.BadRequest):
            uploads.parse_metadata(header)
    else:
        assert uploads.parse_metadata(header) == pairs


@FAST
@given(st.one_of(HEADER_TEXT, st.lists(
    st.tuples(KEYS | HEADER_TEXT, HEADER_TEXT | st.binary().map(
        lambda b: base64.b64encode(b).decode())), max_size=5,
).map(lambda pairs: ",".join(f"{k} {v}" for k, v in pairs))))
def test_any_metadata_parses_or_is_a_400(header: str) -> None:
    try:
        pairs = uploads.parse_metadata(header)
    except errors.BadRequest:
        return
    assert all(uploads._METADATA_KEY.match(k) for k in pairs)


@FAST
@given(HEADER_TEXT | st.integers(min_value=0).map(str))
def test_integer_headers_parse_or_are_a_400(value: str) -> None:
    try:
        parsed = uploads._int_header(request(upload_offset=value), "upload-offset")
    except errors.BadRequest as error:
        assert error.code in ("invalid_header", "missing_header")
        return
    assert parsed is not None and parsed >= 0 and str(parsed) == value.lstrip("0").rjust(1, "0")


@FAST
@given(st.sampled_from(sorted(uploads.CHECKSUMS)), st.binary(max_size=64))
def test_checksum_round_trips(algorithm: str, body: bytes) -> None:
    digest = uploads.CHECKSUMS[algorithm](body).digest()
    header = f"{algorithm} {base64.b64encode(digest).decode()}"
    tus = uploads.TusServer(None, LocalStorage("."))  # type: ignore[arg-type]
    assert tus._checksum(request(upload_checksum=header)) == (algorithm, digest)


@FAST
@given(HEADER_TEXT)
def test_any_checksum_header_parses_or_is_a_400(value: str) -> None:
    tus = uploads.TusServer(None, LocalStorage("."))  # type: ignore[arg-type]
    try:
        parsed = tus._checksum(request(upload_checksum=value))
    except errors.BadRequest:
        return
    assert parsed is not None and parsed[0] in uploads.CHECKSUMS


#: What a tus request may be answered with when its headers are wrong.
TUS_REFUSALS = {400, 401, 403, 404, 409, 410, 412, 413, 415, 422}


async def test_any_creation_headers_answer_a_documented_4xx(
    client: httpx.AsyncClient,
) -> None:
    user, token = await make_user()
    photo = await make_photo(user)
    loop = asyncio.get_running_loop()
    ids = st.sampled_from([photo.id, "x", "obs\x00", "é" * 3]) | st.text(max_size=40)

    def meta(pid: str, extra: str) -> str:
        return f"photo_id {base64.b64encode(pid.encode()).decode()}" + extra

    headers = st.fixed_dictionaries({}, optional={
        "Tus-Resumable": st.just("1.0.0") | HEADER_TEXT,
        "Upload-Length": st.integers(0, 2**70).map(str) | HEADER_TEXT,
        "Upload-Metadata": st.builds(meta, ids, st.just("") | HEADER_TEXT.map(","
                                                                                .__add__)),
        "Content-Type": st.just(uploads.OCTET_STREAM) | HEADER_TEXT,
        "Upload-Checksum": HEADER_TEXT,
    })

    @REQUESTS
    @given(headers)
    def check(sent: dict[str, str]) -> None:
        sent = {k: v.strip() for k, v in sent.items()}
        response = call(loop, client.post(
            "/api/v1/uploads/", headers={**auth(token), **{
                k: v.encode("latin-1") for k, v in sent.items()}}))  # type: ignore[dict-item]
        if response.status_code == 201:
            return
        assert response.status_code in TUS_REFUSALS, (sent, response.text)
        assert response.json()["error"]["code"]
        assert response.headers["tus-resumable"] == "1.0.0"

    await asyncio.to_thread(check)


async def test_any_patch_headers_answer_a_documented_4xx(client: httpx.AsyncClient) -> None:
    user, token = await make_user()
    photo = await make_photo(user)
    created = await client.post("/api/v1/uploads/", headers={
        **auth(token), "Tus-Resumable": "1.0.0", "Upload-Length": "10",
        "Upload-Metadata": f"photo_id {base64.b64encode(photo.id.encode()).decode()}"})
    assert created.status_code == 201, created.text
    location = created.headers["location"]
    loop = asyncio.get_running_loop()
    headers = st.fixed_dictionaries({"Tus-Resumable": st.just("1.0.0")}, optional={
        "Upload-Offset": st.just("0") | st.integers(0, 2**70).map(str) | HEADER_TEXT,
        "Content-Type": st.just(uploads.OCTET_STREAM) | HEADER_TEXT,
        "Upload-Checksum": HEADER_TEXT | st.just("sha1 " + base64.b64encode(
            hashlib.sha1(b"abc").digest()).decode()),
    })

    @REQUESTS
    @given(headers, st.binary(max_size=4))
    def check(sent: dict[str, str], body: bytes) -> None:
        response = call(loop, client.patch(location, content=body, headers={
            **auth(token), **{k: v.strip().encode("latin-1") for k, v in sent.items()},
        }))  # type: ignore[arg-type]
        if response.status_code == 204:
            return
        assert response.status_code in TUS_REFUSALS | {460}, (sent, response.text)
        assert response.json()["error"]["code"]

    await asyncio.to_thread(check)

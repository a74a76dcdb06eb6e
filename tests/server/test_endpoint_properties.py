"""Property-based: whatever text a client puts in a path or query parameter,
or a JSON body's values, every API route answers with a 2xx or a documented
4xx, never a 5xx.  PostgreSQL refuses a NUL character and integers past 64
bits in a query, so these run on both backends (server/endpoint.py,
server/middleware.py)."""

from __future__ import annotations

import asyncio
import json
import re
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette

from server.routes import ENDPOINTS
from tests.factories import auth, make_user
from tests.properties import JSON, REQUESTS, call

#: Text with what databases and parsers stumble on: NUL, control characters,
#: non-ASCII, numbers past 64 bits.
NASTY = (
    st.text(max_size=30)
    | st.sampled_from(["\x00", "a\x00b", "9" * 25, "-9" * 12, "1e999", "NaN", "é", "%", "/"])
    | st.integers(min_value=-(2**80), max_value=2**80).map(str)
)
QUERY_NAMES = ["last_pulled_at", "schema_version", "limit", "migration", "project",
               "taxon_id", "phenophase_id", "flag"]
ROUTES = sorted({(e.method, e.path) for e in ENDPOINTS} | {
    ("GET", "/api/v1/photos/{photo_id}/original"),
    ("GET", "/api/v1/photos/{photo_id}/derivatives/{size}"),
})


async def test_any_path_and_query_text_is_answered_without_a_5xx(db: Starlette) -> None:
    _, token = await make_user("admin")
    loop = asyncio.get_running_loop()
    transport = httpx.ASGITransport(app=db)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:

        @REQUESTS
        @given(st.sampled_from(ROUTES), st.data())
        def check(route: tuple[str, str], data: st.DataObject) -> None:
            method, template = route
            path = re.sub(r"{\w+}", lambda _: quote(data.draw(NASTY), safe=""), template)
            query = data.draw(st.dictionaries(st.sampled_from(QUERY_NAMES), NASTY, max_size=3))
            r = call(loop, client.request(method, path, params=query, headers=auth(token),
                                          json={} if method in ("POST", "PUT") else None))
            assert r.status_code < 500, (method, path, query, r.text)

        await asyncio.to_thread(check)


async def test_any_json_body_is_answered_without_a_5xx(db: Starlette) -> None:
    _, token = await make_user("admin")
    loop = asyncio.get_running_loop()
    writes = [(e.method, e.path) for e in ENDPOINTS if e.request_schema]
    transport = httpx.ASGITransport(app=db)
    raw = st.sampled_from([b'{"x": NaN}', b'{"a": 1e999}', b'"\\ud800"', b'{"a": "\\u0000"}',
                           b'{"changes": {"observations": {"created": [{"id": 1e999}]}}}'])
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:

        @REQUESTS
        @given(st.sampled_from(writes), raw | JSON.map(lambda v: json.dumps(v).encode()))
        def check(route: tuple[str, str], body: bytes) -> None:
            method, template = route
            path = template.replace("{slug}", "nope").replace("{username}", "nobody")
            r = call(loop, client.request(method, path, content=body, headers={
                **auth(token), "Content-Type": "application/json"}))
            assert r.status_code < 500, (method, path, body, r.text)
            assert r.json()["error"]["code"] if r.status_code >= 400 else True

        await asyncio.to_thread(check)


@pytest.mark.parametrize(("value", "refused"), [
    (2**53, False), (2**63 - 1, False), (-(2**63), False),
    (2**63, True), (2**64 - 1, True),  # orjson reads ints below -2**63 as floats
])
async def test_integers_past_64_bits_are_refused_before_the_database(
    db: Starlette, value: int, refused: bool
) -> None:
    """The walk for unstorable values is skipped for most bodies; an integer
    between 53 and 64 bits still passes and one past 64 bits is still 422."""
    _, token = await make_user("admin")
    transport = httpx.ASGITransport(app=db)
    body = f'{{"name": "n", "slug": "s{value % 1000}", "area": [{value}, 0, 1, 1]}}'
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        r = await client.post("/api/v1/projects", content=body, headers={
            **auth(token), "Content-Type": "application/json"})
    problem = "an integer outside 64 bits" in r.text
    assert problem == refused, r.text
    assert (r.status_code == 422) if refused else (r.status_code < 500)

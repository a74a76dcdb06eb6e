"""The one error shape, locked: every 4xx and 5xx looks like this."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.routing import Route

from schemas import messages
from server.errors import EXCEPTION_HANDLERS
from tests.factories import auth, make_user


def assert_error_shape(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert messages.problems("error", body) == []
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]


async def test_error_shape_for_each_client_error(client: httpx.AsyncClient) -> None:
    _, token = await make_user()
    assert_error_shape(await client.get("/nowhere"), 404, "not_found")
    assert_error_shape(await client.delete("/api/v1/projects"), 405, "method_not_allowed")
    assert_error_shape(await client.get("/api/v1/me"), 401, "not_authenticated")
    assert_error_shape(
        await client.post("/api/v1/projects", json={}, headers=auth(token)),
        403, "permission_denied",
    )
    assert_error_shape(
        await client.post("/api/v1/auth/login", content=b"{nope",
                          headers={"content-type": "application/json"}),
        400, "invalid_json",
    )
    assert_error_shape(
        await client.post("/api/v1/auth/login", content=b"\xff\xfe",
                          headers={"content-type": "application/json"}),
        400, "invalid_json",
    )
    assert_error_shape(
        await client.post("/api/v1/auth/login", content=b"username=a",
                          headers={"content-type": "application/x-www-form-urlencoded"}),
        415, "unsupported_media_type",
    )
    assert_error_shape(
        await client.post("/api/v1/auth/login", json={"username": 5}), 422, "validation_failed"
    )
    assert_error_shape(
        await client.post("/api/v1/auth/login", content=b"x" * 70_000,
                          headers={"content-type": "application/json"}),
        413, "payload_too_large",
    )


async def test_unexpected_errors_are_500_in_the_same_shape_without_internals() -> None:
    async def boom(request: object) -> None:
        raise RuntimeError("secret internals")

    app = Starlette(routes=[Route("/boom", boom)], exception_handlers=EXCEPTION_HANDLERS)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.get("/boom")
    assert_error_shape(r, 500, "internal_error")
    assert "secret" not in r.text

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from server.app import create_app
from server.models.accounts import User
from server.settings import Settings
from tests.conftest import copy_sqlite

BIG = {"username": "big", "password": "x" * 1000, "display_name": "y" * 70_000}


async def test_declared_oversized_body_is_refused_before_reading(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post("/api/v1/auth/register", json=BIG)
    assert r.status_code == 413
    assert r.json()["error"]["details"] == {"max_bytes": 64 * 1024}
    assert not await User.exists()


async def test_streamed_oversized_body_without_length_is_cut_off(
    client: httpx.AsyncClient,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b" " * 1024  # JSON whitespace: valid until the limit strikes

    r = await client.post(
        "/api/v1/auth/register", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    assert not await User.exists()


async def test_bad_content_length_is_400(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/v1/auth/login", content=b"{}",
        headers={"content-type": "application/json", "content-length": "-5"},
    )
    assert r.status_code == 400


async def test_every_response_has_a_request_id_and_security_headers(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/health")
    assert len(r.headers["x-request-id"]) == 32
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    kept = await client.get("/health", headers={"X-Request-Id": "proxy-given-id-123"})
    assert kept.headers["x-request-id"] == "proxy-given-id-123"
    replaced = await client.get("/health", headers={"X-Request-Id": "bad id;drop"})
    assert replaced.headers["x-request-id"] != "bad id;drop"


async def test_rate_limit_answers_429_with_retry_after(
    tmp_path: Path, sqlite_template: Path
) -> None:
    copy_sqlite(sqlite_template, tmp_path / "phenosync.sqlite3")  # the default database
    settings = Settings.from_env({"PHENOSYNC_DATA_DIR": str(tmp_path),
                                  "PHENOSYNC_RATE_LIMIT_PER_MINUTE": "3"})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await app.state.database.migrate()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            statuses = [(await c.get("/api/v1/taxa")).status_code for _ in range(4)]
            limited = await c.get("/api/v1/taxa")
            other = await c.get("/api/v1/taxa", headers={"Authorization": "Bearer psy_x"})
            health = await c.get("/health")
    assert statuses == [200, 200, 200, 429]
    assert limited.json()["error"]["code"] == "too_many_requests"
    assert 1 <= int(limited.headers["retry-after"]) <= 61
    assert other.status_code == 401  # another key has its own window
    assert health.status_code == 200  # not under /api/


async def test_cors_allows_only_configured_origins(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/taxa", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


async def test_cors_answers_a_configured_origin_and_its_preflight(
    tmp_path: Path, sqlite_template: Path
) -> None:
    copy_sqlite(sqlite_template, tmp_path / "phenosync.sqlite3")  # the default database
    settings = Settings.from_env({"PHENOSYNC_DATA_DIR": str(tmp_path),
                                  "PHENOSYNC_CORS_ORIGINS": "https://app.example"})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await app.state.database.migrate()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            simple = await c.get("/api/v1/taxa", headers={"Origin": "https://app.example"})
            preflight = await c.options("/api/v1/sync/push", headers={
                "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type"})
            evil = await c.options("/api/v1/sync/push", headers={
                "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert simple.headers["access-control-allow-origin"] == "https://app.example"
    assert "Retry-After" in simple.headers["access-control-expose-headers"]
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert evil.status_code == 400 and "access-control-allow-origin" not in evil.headers


async def test_a_nul_in_the_address_is_400_not_a_database_error(
    client: httpx.AsyncClient,
) -> None:
    for path in ("/api/v1/projects/a%00b", "/api/v1/photos/%00/original",
                 "/api/v1/review/queue?project=a%00", "/review/items/x%00"):
        r = await client.get(path)
        assert r.status_code == 400, path
        assert r.json()["error"]["code"] == "nul_character"

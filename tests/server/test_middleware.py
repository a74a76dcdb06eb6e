from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from server.models.accounts import User

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

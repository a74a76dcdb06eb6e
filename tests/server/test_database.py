"""The database context per request (server/database.py)."""

from __future__ import annotations

import asyncio

import httpx

from tests.factories import auth, make_user


async def test_concurrent_requests_each_get_the_database_context(
    client: httpx.AsyncClient,
) -> None:
    # Requests that overlap in one process (uvicorn serves them as concurrent
    # tasks) must not share the context's reset token: each one restores only
    # what it set.
    _, token = await make_user()
    responses = await asyncio.gather(
        *(client.get("/api/v1/me", headers=auth(token)) for _ in range(10))
    )
    assert [r.status_code for r in responses] == [200] * 10

"""The per-process token cache (server/tokens.py): what it remembers, and for how long."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
from starlette.applications import Starlette

from server.models.accounts import ApiToken, User
from server.tokens import TokenCache, authenticate, hash_token, revoke
from tests.factories import auth, make_user


async def test_a_checked_token_is_remembered_for_its_seconds_then_checked_again(
    db: Starlette,
) -> None:
    user, token = await make_user()
    cache = TokenCache(0.3)
    found = await authenticate(token, cache)
    assert found is not None and found[0].id == user.id
    # Deactivated in the database by hand: this process still has it in mind ...
    await User.filter(id=user.id).update(is_active=False)
    remembered = await authenticate(token, cache)
    assert remembered is not None and remembered[0].id == user.id
    # ... for at most the cache's seconds.
    await asyncio.sleep(0.35)
    assert await authenticate(token, cache) is None
    assert await authenticate(token, cache) is None  # a refused token is not remembered


async def test_without_seconds_every_check_asks_the_database(db: Starlette) -> None:
    user, token = await make_user()
    cache = TokenCache(0)
    assert await authenticate(token, cache) is not None
    await User.filter(id=user.id).update(is_active=False)
    assert await authenticate(token, cache) is None


async def test_a_remembered_token_still_expires_on_time(db: Starlette) -> None:
    user, token = await make_user()
    await ApiToken.filter(user=user).update(expires_at=datetime.now(UTC) + timedelta(seconds=0.3))
    cache = TokenCache(60)
    assert await authenticate(token, cache) is not None
    await asyncio.sleep(0.35)
    assert await authenticate(token, cache) is None


async def test_revoking_forgets_at_once(db: Starlette) -> None:
    _, token = await make_user()
    cache = TokenCache(60)
    found = await authenticate(token, cache)
    assert found is not None
    await revoke(found[1], cache)
    assert cache.get(hash_token(token)) is None
    assert await authenticate(token, cache) is None


async def test_a_full_cache_keeps_working() -> None:
    cache = TokenCache(60)
    cache.MAX_ENTRIES = 3
    user, record = User(id=1), ApiToken(id=1, expires_at=None)
    for n in range(10):
        cache.put(f"hash{n}", user, record)
        assert cache.get(f"hash{n}") is not None
    assert cache.get("hash0") is None  # forgotten to make room


async def test_logout_takes_effect_at_once_in_the_process_that_served_it(
    client: httpx.AsyncClient,
) -> None:
    _, token = await make_user()
    assert (await client.get("/api/v1/me", headers=auth(token))).status_code == 200  # remembered
    assert (await client.post("/api/v1/auth/logout", headers=auth(token))).status_code == 204
    assert (await client.get("/api/v1/me", headers=auth(token))).status_code == 401

"""API tokens: issued once, stored as SHA-256, looked up by hash, revocable.

A server process remembers a token it has just checked for a few seconds
(``TokenCache``, ``PHENOSYNC_TOKEN_CACHE_SECONDS``): a device sends requests
in bursts (a sync round, a photo's creation and its bytes), and each one
would otherwise cost a database query.  A logout forgets the token in the
process that served it at once; another worker process, or a token revoked
or a user deactivated in the database directly, is refused once the entry is
that old.  An expired token is refused at once either way.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import UTC, datetime, timedelta

from server.models.accounts import ApiToken, User
from server.models.rows import placeholder

PREFIX = "psy_"
# Touch ``last_used_at`` at most this often: not a write on every request.
_TOUCH_EVERY = timedelta(minutes=10)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenCache:
    """Tokens this process found valid, by hash, each for ``seconds``.

    The user and token records are shared by the requests that find them
    here: they are read, never changed, by request handlers."""

    MAX_ENTRIES = 10_000

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._entries: dict[str, tuple[float, User, ApiToken]] = {}

    def get(self, token_hash: str) -> tuple[User, ApiToken] | None:
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        checked, user, record = entry
        if time.monotonic() - checked >= self.seconds or (
            record.expires_at is not None and record.expires_at <= datetime.now(UTC)
        ):
            del self._entries[token_hash]
            return None
        return user, record

    def put(self, token_hash: str, user: User, record: ApiToken) -> None:
        if self.seconds <= 0:
            return
        now = time.monotonic()
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries = {
                k: v for k, v in self._entries.items() if now - v[0] < self.seconds
            }
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
        self._entries[token_hash] = (now, user, record)

    def forget(self, token_hash: str) -> None:
        self._entries.pop(token_hash, None)


async def issue(user: User, *, name: str = "", ttl_days: int | None = 365) -> tuple[str, ApiToken]:
    token = PREFIX + secrets.token_urlsafe(32)
    expires_at = datetime.now(UTC) + timedelta(days=ttl_days) if ttl_days else None
    record = await ApiToken.create(
        user=user,
        token_hash=hash_token(token),
        prefix=token[:10],
        name=name[:64],
        expires_at=expires_at,
    )
    return token, record


async def authenticate(
    token: str, cache: TokenCache | None = None
) -> tuple[User, ApiToken] | None:
    """The active user a token belongs to, or None when unknown, expired or revoked."""
    if not token.startswith(PREFIX) or len(token) > 128:
        return None
    token_hash = hash_token(token)
    if cache is not None and (cached := cache.get(token_hash)) is not None:
        return cached
    # Every request not in the cache asks this: two lookups by unique key on
    # plain rows, turned into instances as the ORM does, instead of building a
    # joined query (2 ms of a 500-record sync push).
    conn = ApiToken._meta.db
    found = await conn.execute_query_dict(
        f"SELECT * FROM api_tokens WHERE token_hash = {placeholder(conn, 1)}",
        [token_hash])
    now = datetime.now(UTC)
    if not found:
        return None
    record = ApiToken._init_from_db(**found[0])
    if record.revoked_at is not None:
        return None
    if record.expires_at is not None and record.expires_at <= now:
        return None
    users = await conn.execute_query_dict(
        f"SELECT * FROM users WHERE id = {placeholder(conn, 1)}",
        [record.user_id])  # type: ignore[attr-defined]
    if not users:
        return None
    user = User._init_from_db(**users[0])
    if not user.is_active:
        return None
    if record.last_used_at is None or now - record.last_used_at > _TOUCH_EVERY:
        await ApiToken.filter(id=record.id).update(last_used_at=now)
    if cache is not None:
        cache.put(token_hash, user, record)
    return user, record


async def revoke(record: ApiToken, cache: TokenCache | None = None) -> None:
    await ApiToken.filter(id=record.id, revoked_at=None).update(revoked_at=datetime.now(UTC))
    if cache is not None:
        cache.forget(record.token_hash)

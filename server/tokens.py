"""API tokens: issued once, stored as SHA-256, looked up by hash, revocable."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from server.models.accounts import ApiToken, User

PREFIX = "psy_"
# Touch ``last_used_at`` at most this often: not a write on every request.
_TOUCH_EVERY = timedelta(minutes=10)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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


async def authenticate(token: str) -> tuple[User, ApiToken] | None:
    """The active user a token belongs to, or None when unknown, expired or revoked."""
    if not token.startswith(PREFIX) or len(token) > 128:
        return None
    record = await ApiToken.get_or_none(token_hash=hash_token(token)).select_related("user")
    now = datetime.now(UTC)
    if record is None or record.revoked_at is not None:
        return None
    if record.expires_at is not None and record.expires_at <= now:
        return None
    user: User = record.user
    if not user.is_active:
        return None
    if record.last_used_at is None or now - record.last_used_at > _TOUCH_EVERY:
        await ApiToken.filter(id=record.id).update(last_used_at=now)
    return user, record


async def revoke(record: ApiToken) -> None:
    await ApiToken.filter(id=record.id, revoked_at=None).update(revoked_at=datetime.now(UTC))

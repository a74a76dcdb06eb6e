"""Login throttling: too many failed logins for a user name or from an address
in the window get 429 with Retry-After.  Failures live in the database, so
the limit holds across server processes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas import errors
from server.models.throttle import LoginFailure

WINDOW = timedelta(minutes=15)


def keys(username: str, address: str | None) -> list[str]:
    found = [f"user:{username.lower()[:64]}"]
    if address:
        found.append(f"addr:{address[:64]}")
    return found


async def check(username: str, address: str | None, limit: int) -> None:
    now = datetime.now(UTC)
    for key in keys(username, address):
        recent = LoginFailure.filter(key=key, created_at__gt=now - WINDOW)
        if await recent.count() >= limit:
            oldest = await recent.order_by("created_at").first()
            assert oldest is not None
            retry = max(1, int((oldest.created_at + WINDOW - now).total_seconds()) + 1)
            raise errors.TooManyRequests(
                f"Too many failed logins: try again in {retry // 60 + 1} minutes.",
                headers={"Retry-After": str(retry)},
                details={"retry_after_s": retry},
            )


async def failed(username: str, address: str | None) -> None:
    await LoginFailure.bulk_create([LoginFailure(key=k) for k in keys(username, address)])


async def succeeded(username: str) -> None:
    await LoginFailure.filter(key=keys(username, None)[0]).delete()


async def forget_old(now: datetime | None = None) -> int:
    return await LoginFailure.filter(created_at__lt=(now or datetime.now(UTC)) - WINDOW).delete()

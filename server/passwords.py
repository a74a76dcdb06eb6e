"""Password hashing with argon2id, off the event loop (it is slow on purpose)."""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from starlette.concurrency import run_in_threadpool

_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile


@cache
def _dummy_hash() -> str:
    """Verified against when the user does not exist, so that a wrong user name
    costs as much time as a wrong password and names cannot be probed by timing.
    Made on first use: hashing takes most of a second, not to be paid at each start."""
    return _hasher.hash("not-a-real-password")


def hash_password_sync(password: str) -> str:
    return _hasher.hash(password)


async def hash_password(password: str) -> str:
    return await run_in_threadpool(_hasher.hash, password)


async def verify_password(stored_hash: str | None, password: str) -> bool:
    def check() -> bool:
        try:
            matches = _hasher.verify(stored_hash or _dummy_hash(), password)
            return matches and stored_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    return await run_in_threadpool(check)

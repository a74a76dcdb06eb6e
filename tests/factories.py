"""Factories for test data, one function per thing: no hand-built dicts in tests."""

from __future__ import annotations

import itertools
from typing import Any

from tortoise.transactions import in_transaction

from schemas.roles import GlobalRole, ProjectRole
from server.models.accounts import Membership, User
from server.models.reference import Project
from server.models.sequence import next_seq
from server.passwords import hash_password_sync
from server.tokens import issue

_counter = itertools.count(1)
PASSWORD = "correct horse battery"
_PASSWORD_HASH = hash_password_sync(PASSWORD)


async def make_project(**overrides: Any) -> Project:
    n = next(_counter)
    async with in_transaction() as conn:
        seq = await next_seq(conn)
        values: dict[str, Any] = {
            "slug": f"project-{n}",
            "name": f"Project {n}",
            "min_latitude": 50.75,
            "min_longitude": 3.35,
            "max_latitude": 53.56,
            "max_longitude": 7.23,
            "created_seq": seq,
            "updated_seq": seq,
        }
        values.update(overrides)
        return await Project.create(**values, using_db=conn)


async def make_user(
    role: str = "volunteer", project: Project | None = None, **overrides: Any
) -> tuple[User, str]:
    """A user and a working bearer token.  ``role`` may be global or per project."""
    n = next(_counter)
    global_role = role if role in ("coordinator", "admin") else "volunteer"
    user = await User.create(
        username=overrides.pop("username", f"user{n}"),
        display_name=f"User {n}",
        password_hash=_PASSWORD_HASH,
        role=GlobalRole(global_role),
        **overrides,
    )
    if project is not None:
        project_role = role if role != "admin" else "coordinator"
        await Membership.create(user=user, project=project, role=ProjectRole(project_role))
    token, _ = await issue(user)
    return user, token


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}

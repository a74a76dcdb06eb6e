"""Schemathesis against ``/openapi.json`` of a real server: uvicorn on a
loopback port, this session's database (SQLite, and PostgreSQL when set).

Every documented operation is called with generated requests, valid
(positive) and invalid (negative), as each role: anonymous, volunteer,
reviewer, expert, coordinator and admin of one project.  Every response must
be documented by the schema: no 5xx, a declared status code and content type,
and a body that matches the declared schema.

Deterministic (Hypothesis derandomized, no example database) and bounded:
``EXAMPLES`` per operation, role and mode.  ``PHENOSYNC_FUZZ_EXAMPLES`` (read
by this test, not a server setting) runs it longer: docs/operations.md,
"Fuzzing".
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.applications import Starlette
from tortoise.transactions import in_transaction

from schemas.roles import ROLE_NAMES
from server.tokens import issue
from tests.factories import PASSWORD, make_user
from tests.factories_photos import make_observation, make_photo
from tests.factories_sync import make_world
from tests.servers import uvicorn_child

#: Examples per operation, role and generation mode: bounded for CI.
EXAMPLES = int(os.environ.get("PHENOSYNC_FUZZ_EXAMPLES", "3"))
ROLES = ("anonymous", *ROLE_NAMES)
#: Statuses that reject invalid input: the usual ones, and tus's own
#: (412 wrong Tus-Resumable, 413 past Upload-Length, 460 checksum).
REJECTIONS = [400, 401, 403, 404, 405, 406, 409, 412, 413, 415, 422, 426, 428, 429, 460]
CONFIG = f"""
[checks.negative_data_rejection]
expected-statuses = {REJECTIONS}
"""
# tus bodies are raw bytes, sent as they are.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")
#: Throwaway tokens per role, for the operation that revokes its token.
SPARE_TOKENS = 30
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@dataclass
class Live:
    url: str
    tokens: dict[str, str | None]
    usernames: dict[str, str]
    spare: dict[str, list[str]]  # tokens for logout
    known: dict[str, str]  # path parameter -> an id that exists


@pytest.fixture
async def live(db: Starlette, tmp_path: Path) -> AsyncIterator[Live]:
    """Seed a project with a member of each role and a record with a photo,
    then serve the session's database with uvicorn in a child process."""
    world = await make_world()
    tokens: dict[str, str | None] = {"anonymous": None}
    usernames: dict[str, str] = {}
    users = {}
    spare: dict[str, list[str]] = {}
    for role in ROLE_NAMES:
        user, token = await make_user(role, project=world.project, username=f"fuzz-{role}")
        tokens[role], usernames[role], users[role] = token, user.username, user
        async with in_transaction():  # one commit (one fsync on SQLite), not one per token
            spare[role] = [(await issue(user))[0] for _ in range(SPARE_TOKENS)]
    observation = await make_observation(users["volunteer"], project=world.project)
    photo = await make_photo(users["volunteer"], observation)
    known = {
        "slug": world.project.slug,
        "username": usernames["reviewer"],
        "observation_id": observation.id,
        "photo_id": photo.id,
        "size": "320",
    }
    settings_ = db.state.settings
    env = {
        "PHENOSYNC_DATA_DIR": str(tmp_path / "data"),
        "PHENOSYNC_DATABASE_URL": settings_.database_url,
        "PHENOSYNC_SECRET_KEY": "fuzz",
        "PHENOSYNC_LOG_LEVEL": "error",
        "PHENOSYNC_RATE_LIMIT_PER_MINUTE": "1000000",
        "PHENOSYNC_LOGIN_ATTEMPTS_PER_15MIN": "1000000",
        "PHENOSYNC_MAX_BODY_BYTES": str(64 * 1024),
        "PHENOSYNC_JOB_WORKERS": "1",
    }
    async with uvicorn_child(env) as url:
        yield Live(url, tokens, usernames, spare, known)


def fuzz(live: Live) -> list[str]:
    """Run every operation as every role; returns the failures found."""
    schema = schemathesis.openapi.from_url(
        live.url + "/openapi.json", config=SchemathesisConfig.from_str(CONFIG)
    )
    session = requests.Session()
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        started = time.monotonic()
        # Path parameters are any string: only a body, a query or a header
        # can be invalid.
        negatable = len(operation.body) or len(operation.query) or len(operation.headers)
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if negatable else [])
        for mode in modes:
            for role in _roles(operation, mode):
                run = _runner(live, session, operation, mode, role, failures)
                run()
        print(f"{operation.method.upper()} {operation.path}: {time.monotonic() - started:.1f} s")
    return failures


def _roles(operation: Any, mode: GenerationMode) -> tuple[str, ...]:
    """Every role sends valid requests; a public operation only tells "no
    token" from "a token", and invalid input is tried without a token and as
    admin, whom no access rule stops before the input is read."""
    if not operation.definition.raw.get("security"):
        return ("anonymous", "volunteer")
    if mode is GenerationMode.NEGATIVE:
        return ("anonymous", "admin")
    return ROLES


def _runner(
    live: Live, session: requests.Session, operation: Any, mode: GenerationMode,
    role: str, failures: list[str],
) -> Callable[[], None]:
    checks = CHECKS + ([negative_data_rejection] if mode is GenerationMode.NEGATIVE else [])
    known = {k: v for k, v in live.known.items() if k in operation.path_parameters}

    @settings(
        max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), use_known=st.booleans())
    def run(case: Any, use_known: bool) -> None:
        if use_known and known and mode is GenerationMode.POSITIVE:
            case.path_parameters = {**(case.path_parameters or {}), **known}
        headers = dict(case.headers or {})
        token = live.tokens[role]
        if operation.path == "/api/v1/auth/logout" and token is not None:
            spare = live.spare[role]
            token = spare.pop() if spare else _fresh_token(live, session, role)
        if token is not None and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {token}"
        case.headers = headers
        try:
            case.call_and_validate(base_url=live.url, session=session, checks=checks)
        except (Exception, BaseExceptionGroup):
            raise

    def guarded() -> None:
        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:
            # Report every failing combination together, not only the first.
            failures.append(f"[{role} {mode.value}] {operation.method.upper()} "
                            f"{operation.path}: {str(exc)[:1500]}")

    return guarded


def _fresh_token(live: Live, session: requests.Session, role: str) -> str:
    """Logout revokes the token it is called with: log in for a throwaway one."""
    r = session.post(live.url + "/api/v1/auth/login",
                     json={"username": live.usernames[role], "password": PASSWORD})
    r.raise_for_status()
    return str(r.json()["token"])


async def test_every_operation_as_every_role_answers_as_documented(live: Live) -> None:
    failures = await asyncio.to_thread(fuzz, live)
    assert not failures, "\n\n".join(failures)

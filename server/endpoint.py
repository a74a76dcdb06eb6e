"""Endpoints declared once: route, access rule, request and response schemas.

An ``Endpoint`` is the single place that says who may call a route and what
it accepts.  From the same list the app builds its Starlette routes and
``/openapi.json`` describes every ``/api/v1`` route, so the two cannot drift
(``tests/server/test_openapi.py`` checks they do not).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from schemas import errors, messages
from schemas.roles import GlobalRole
from server.models.accounts import ApiToken, User
from server.tokens import authenticate


class Access(StrEnum):
    PUBLIC = "public"  # anyone, no token
    USER = "user"  # any signed-in user
    COORDINATOR = "coordinator"  # global coordinator or admin
    ADMIN = "admin"


@dataclass
class Call:
    """What a handler gets: the request, the caller and the validated body."""

    request: Request
    user: User | None
    token: ApiToken | None
    body: Any = None

    @property
    def settings(self) -> Any:
        return self.request.app.state.settings

    def require_user(self) -> User:
        if self.user is None:
            raise errors.NotAuthenticated()
        return self.user


Handler = Callable[[Call], Awaitable[Response]]


@dataclass(frozen=True)
class Query:
    """A query parameter, as ``/openapi.json`` documents it (the handler parses it)."""

    name: str
    schema: Mapping[str, Any]
    description: str = ""


@dataclass
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    access: Access
    request_schema: str | None = None
    response_schema: str | None = None
    status: int = 200
    tags: Sequence[str] = field(default_factory=tuple)
    description: str = ""
    query: Sequence[Query] = field(default_factory=tuple)
    # Statuses this endpoint answers besides the ones every endpoint may
    # (server/openapi.py), e.g. ``{409: "The user name is taken."}``.
    errors: Mapping[int, str] = field(default_factory=dict)
    # A batch whose handler refuses a NUL per record (one bad record must not
    # sink the batch); every other body with a NUL in a text is refused whole.
    nul_per_record: bool = False


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise errors.NotAuthenticated(
            "The Authorization header must be 'Bearer <token>'.", code="invalid_token"
        )
    return value.strip()


async def identify(request: Request) -> tuple[User | None, ApiToken | None]:
    token = bearer_token(request)
    if token is None:
        return None, None
    found = await authenticate(token, request.app.state.token_cache)
    if found is None:
        raise errors.NotAuthenticated(
            "The token is unknown, expired or revoked: log in again.", code="invalid_token"
        )
    return found


def check_access(access: Access, user: User | None) -> None:
    if access is Access.PUBLIC:
        return
    if user is None:
        raise errors.NotAuthenticated()
    if access is Access.COORDINATOR and user.role not in (GlobalRole.COORDINATOR, GlobalRole.ADMIN):
        raise errors.PermissionDenied("Only coordinators and admins may do this.")
    if access is Access.ADMIN and user.role != GlobalRole.ADMIN:
        raise errors.PermissionDenied("Only admins may do this.")


async def read_json(request: Request, schema: str, *, check_nul: bool = True) -> Any:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise errors.UnsupportedMediaType(
            f"Send the body as 'Content-Type: application/json', not {content_type or 'nothing'!r}."
        )
    raw = await request.body()
    try:
        body = orjson.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.InvalidJSON(f"The request body is not valid JSON: {exc}.") from None
    if _may_be_unstorable(raw, body):
        _check_storable(body, "", nul=check_nul)
    found = messages.problems(schema, body)
    if found:
        raise errors.ValidationFailed(
            f"The request body does not match the {schema} schema: {found[0]['message']}"
            f" (at {found[0]['path']}).",
            details=found,
        )
    return body


#: The range of a database BIGINT: no id, cursor or count lies outside it.
INT64 = range(-(2**63), 2**63)


def _may_be_unstorable(raw: bytes, body: Any) -> bool:
    """Whether the body needs the walk of ``_check_storable`` (13 ms for a
    push of 500 records).  orjson refuses lone surrogates, ``NaN`` and
    ``1e999`` itself; a NUL can only arrive as the escape ``\\u0000``; and
    orjson's strict-integer writer (0.4 ms) raises on any integer past 53
    bits, a superset of those past 64."""
    if b"\\u0000" in raw:
        return True
    try:
        orjson.dumps(body, option=orjson.OPT_STRICT_INTEGER)
    except orjson.JSONEncodeError:
        return True
    return False


def _check_storable(value: Any, path: str, *, nul: bool = True) -> None:
    """Values a database can store: text without a NUL character (PostgreSQL
    refuses it; with ``nul=False`` the handler refuses it per record) or a
    lone surrogate (JSON's ``"\\ud800"`` is not UTF-8), integers within 64
    bits, finite numbers (orjson refuses ``NaN``, ``1e999`` and lone
    surrogates already; the checks stay for any other reader)."""
    problem: str | None = None
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        problem = None if value in INT64 else "an integer outside 64 bits"
    elif isinstance(value, float):
        problem = None if math.isfinite(value) else "a number that is not finite"
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_storable(key, path, nul=nul)
            _check_storable(item, f"{path}/{key}", nul=nul)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_storable(item, f"{path}/{index}", nul=nul)
    elif isinstance(value, str):
        problem = "a NUL character" if nul and "\x00" in value else None
        if problem is None:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                problem = "a lone surrogate (text that is not Unicode)"
    if problem:
        where = path or "/"
        failure = errors.ValidationFailed(
            f"The request body has {problem} at {where}: remove it.",
            details=[{"path": where, "message": problem}],
        )
        if "NUL" in problem:
            failure.code = "nul_character"
        raise failure


def route(endpoint: Endpoint) -> Route:
    async def app(request: Request) -> Response:
        user, token = await identify(request)
        check_access(endpoint.access, user)
        body = None
        if endpoint.request_schema is not None:
            body = await read_json(request, endpoint.request_schema,
                                   check_nul=not endpoint.nul_per_record)
        return await endpoint.handler(Call(request=request, user=user, token=token, body=body))

    return Route(endpoint.path, app, methods=[endpoint.method], name=endpoint.handler.__name__)

"""Register, log in, log out, and who am I."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from schemas import errors
from server import throttle
from server.endpoint import Access, Call, Endpoint
from server.models import audit
from server.models.accounts import Membership, User
from server.passwords import hash_password, verify_password
from server.tokens import issue, revoke


async def user_dict(user: User) -> dict[str, object]:
    memberships = await Membership.filter(user_id=user.id).select_related("project")
    return {
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "role": str(user.role),
        "memberships": [
            {"project": m.project.slug, "role": str(m.role)}
            for m in sorted(memberships, key=lambda m: m.project.slug)
        ],
    }


async def token_response(call: Call, user: User, status: int, name: str) -> JSONResponse:
    token, record = await issue(user, name=name, ttl_days=call.settings.token_ttl_days)
    return JSONResponse(
        {
            "token": token,
            "token_type": "bearer",
            "expires_at": record.expires_at.isoformat() if record.expires_at else None,
            "user": await user_dict(user),
        },
        status_code=status,
    )


async def register(call: Call) -> Response:
    body = call.body
    password_hash = await hash_password(body["password"])
    try:
        async with in_transaction():
            user = await User.create(
                username=body["username"],
                display_name=body.get("display_name", body["username"]),
                email=body.get("email"),
                password_hash=password_hash,
            )
            await audit.record("user.registered", "user", user.id, actor=user)
    except IntegrityError:
        raise errors.AlreadyExists(
            f"The user name {body['username']!r} is taken: choose another.",
            details={"field": "username"},
        ) from None
    return await token_response(call, user, 201, "registration")


async def login(call: Call) -> Response:
    body = call.body
    address = call.request.client.host if call.request.client else None
    await throttle.check(body["username"], address, call.settings.login_attempts_per_15min)
    user = await User.get_or_none(username=body["username"])
    ok = await verify_password(user.password_hash if user else None, body["password"])
    if user is None or not ok or not user.is_active:
        await throttle.failed(body["username"], address)
        raise errors.InvalidCredentials()
    await throttle.succeeded(body["username"])
    return await token_response(call, user, 200, body.get("token_name", "login"))


async def logout(call: Call) -> Response:
    assert call.token is not None
    await revoke(call.token, call.request.app.state.token_cache)
    return Response(status_code=204)


async def me(call: Call) -> Response:
    return JSONResponse(await user_dict(call.require_user()))


ENDPOINTS = [
    Endpoint(
        "POST", "/api/v1/auth/register", register, "Create a volunteer account",
        Access.PUBLIC, request_schema="register", response_schema="token", status=201,
        tags=("accounts",), errors={409: "The user name is taken."},
        description="Creates a volunteer and returns a bearer token for it.",
    ),
    Endpoint(
        "POST", "/api/v1/auth/login", login, "Log in and get a bearer token",
        Access.PUBLIC, request_schema="login", response_schema="token", tags=("accounts",),
    ),
    Endpoint(
        "POST", "/api/v1/auth/logout", logout, "Revoke the token of this request",
        Access.USER, status=204, tags=("accounts",),
    ),
    Endpoint(
        "GET", "/api/v1/me", me, "The signed-in user and their project roles",
        Access.USER, response_schema="user", tags=("accounts",),
    ),
]

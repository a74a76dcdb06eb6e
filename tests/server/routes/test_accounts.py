from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from server.models.accounts import ApiToken, User
from tests.factories import PASSWORD, auth, make_user

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"


async def test_register_then_login_returns_a_working_token(client: httpx.AsyncClient) -> None:
    r = await client.post(REGISTER, json={"username": "hazel", "password": "s3cret-enough!"})
    assert r.status_code == 201, r.text
    assert r.json()["user"]["role"] == "volunteer"
    r = await client.post(LOGIN, json={"username": "hazel", "password": "s3cret-enough!"})
    assert r.status_code == 200
    token = r.json()["token"]
    me = await client.get("/api/v1/me", headers=auth(token))
    assert me.status_code == 200
    assert me.json()["username"] == "hazel"


async def test_password_is_stored_as_argon2id_and_token_as_sha256(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post(REGISTER, json={"username": "oak", "password": "s3cret-enough!"})
    user = await User.get(username="oak")
    assert user.password_hash.startswith("$argon2id$")
    assert "s3cret" not in user.password_hash
    stored = await ApiToken.get(user=user)
    assert len(stored.token_hash) == 64
    assert stored.token_hash != r.json()["token"]


async def test_duplicate_username_is_409_and_creates_nothing(client: httpx.AsyncClient) -> None:
    body = {"username": "birch", "password": "s3cret-enough!"}
    assert (await client.post(REGISTER, json=body)).status_code == 201
    r = await client.post(REGISTER, json=body)
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "already_exists"
    assert await User.filter(username="birch").count() == 1


async def test_wrong_password_and_unknown_user_look_the_same(client: httpx.AsyncClient) -> None:
    user, _ = await make_user()
    wrong = await client.post(LOGIN, json={"username": user.username, "password": "nope"})
    unknown = await client.post(LOGIN, json={"username": "ghost", "password": "nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["error"]["code"] == "invalid_credentials"
    ok = await client.post(LOGIN, json={"username": user.username, "password": PASSWORD})
    assert ok.status_code == 200


async def test_bad_register_bodies_are_422_and_never_echo_the_password(
    client: httpx.AsyncClient,
) -> None:
    cases = [
        {"username": "ab", "password": "long-enough-pw"},  # name too short
        {"username": "ash tree", "password": "long-enough-pw"},  # bad characters
        {"username": "ash", "password": "short"},  # password too short
        {"username": "ash", "password": 1234567890123},  # wrong type
        {"username": "ash", "password": "long-enough-pw", "role": "admin"},  # unknown field
        {"password": "long-enough-pw"},  # missing field
        ["username", "ash"],  # not an object
    ]
    for body in cases:
        r = await client.post(REGISTER, json=body)
        assert r.status_code == 422, (body, r.text)
        error = r.json()["error"]
        assert error["code"] == "validation_failed"
        assert error["details"] and all({"path", "message"} <= set(d) for d in error["details"])
        assert "short" not in r.text.replace("too short", "")
    assert await User.all().count() == 0


async def test_registration_cannot_grant_a_role(client: httpx.AsyncClient) -> None:
    r = await client.post(
        REGISTER, json={"username": "mallory", "password": "long-enough-pw", "role": "admin"}
    )
    assert r.status_code == 422
    assert not await User.exists(username="mallory")


async def test_logout_revokes_the_token(client: httpx.AsyncClient) -> None:
    _, token = await make_user()
    assert (await client.post("/api/v1/auth/logout", headers=auth(token))).status_code == 204
    r = await client.get("/api/v1/me", headers=auth(token))
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_token"


async def test_expired_malformed_and_missing_tokens_are_401(client: httpx.AsyncClient) -> None:
    user, token = await make_user()
    assert (await client.get("/api/v1/me")).json()["error"]["code"] == "not_authenticated"
    for header in ("Basic abc", "Bearer", "Bearer psy_unknown", "Token " + token):
        r = await client.get("/api/v1/me", headers={"Authorization": header})
        assert r.status_code == 401, header
        assert r.headers["www-authenticate"].startswith("Bearer")
    await ApiToken.filter(user=user).update(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert (await client.get("/api/v1/me", headers=auth(token))).status_code == 401


async def test_inactive_user_token_stops_working(client: httpx.AsyncClient) -> None:
    user, token = await make_user()
    await User.filter(id=user.id).update(is_active=False)
    assert (await client.get("/api/v1/me", headers=auth(token))).status_code == 401


async def test_failed_logins_are_throttled_with_retry_after(client: httpx.AsyncClient) -> None:
    user, _ = await make_user()
    for _ in range(10):
        r = await client.post(LOGIN, json={"username": user.username, "password": "guess"})
        assert r.status_code == 401
    r = await client.post(LOGIN, json={"username": user.username, "password": PASSWORD})
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "too_many_requests"
    assert 60 < int(r.headers["retry-after"]) <= 15 * 60 + 1


async def test_a_nul_in_a_json_body_is_422(client: httpx.AsyncClient) -> None:
    r = await client.post(LOGIN, json={"username": "ri\x00ta", "password": PASSWORD})
    assert r.status_code == 422 and r.json()["error"]["code"] == "nul_character"
    r = await client.post(REGISTER, json={"username": "rita", "password": "long-enough-pw",
                                          "display_name": "R\x00"})
    assert r.status_code == 422
    assert not await User.exists()

"""The reviewer page end to end, in Debian's headless Chromium driven by
Playwright: a reviewer logs in, works through the queue with the keyboard,
verifies the rest in bulk, and the decisions land in the database."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from playwright.async_api import Page, async_playwright
from starlette.applications import Starlette

from server.models.observations import Observation
from server.models.review import ReviewDecision
from tests.factories import PASSWORD, make_user
from tests.factories_review import flagged
from tests.factories_sync import make_world

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


@contextlib.asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[str]:
    """The app on a loopback port (its lifespan is already running: the fixture owns it)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off",
                                           log_level="warning"))
    task = asyncio.create_task(server.serve())
    for _ in range(500):  # uvicorn has no "started" event to await
        if server.started:
            break
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def press(page: Page, key: str) -> None:
    async with page.expect_navigation():
        await page.keyboard.press(key)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed "
                    "(.ci/run installs it)")
async def test_a_reviewer_works_through_the_queue_with_the_keyboard(
    db: Starlette, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    world = await make_world()
    world.project.agreements_required = 1
    await world.project.save()
    _, records = await flagged(client, world, count=4)
    ids = [o.id for o in records]
    reviewer, _ = await make_user("reviewer", project=world.project, username="rita")

    async with serving(db) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(f"{base}/review/")
            assert page.url.endswith("/review/login")
            await page.fill("input[name=username]", "rita")
            await page.fill("input[name=password]", "wrong")
            await page.click("button[type=submit]")
            assert "Unknown user name or wrong password" in await page.inner_text("main")
            await page.fill("input[name=password]", PASSWORD)
            async with page.expect_navigation():
                await page.click("button[type=submit]")
            assert await page.locator("table.queue tbody tr").count() == 4
            assert "Outside the project area" in await page.inner_text("table.queue")

            async with page.expect_navigation():
                await page.click("#start")
            assert page.url.endswith(f"/review/items/{ids[0]}")
            assert "is outside the area of project" in await page.inner_text(".flagbox")
            assert await page.locator(".photos img").get_attribute("alt") == "no photo"
            await page.screenshot(path=str(tmp_path / "review-item.png"), full_page=True)

            await press(page, "v")
            assert page.url.endswith(f"/review/items/{ids[1]}")
            assert "Verify: saved" in await page.inner_text(".flash")
            await press(page, "r")
            assert page.url.endswith(f"/review/items/{ids[2]}")
            await press(page, "s")
            assert page.url.endswith(f"/review/items/{ids[3]}")
            await press(page, "i")
            assert page.url.endswith("/review/")
            assert "Nothing left" in await page.inner_text(".flash")

            # The skipped record is still waiting: verify it in bulk.
            assert await page.locator("table.queue tbody tr").count() == 1
            await page.check(f"input[name=ids][value='{ids[2]}']")
            async with page.expect_navigation():
                await page.click("#bulk-verify")
            assert "Verified 1 of 1 selected." in await page.inner_text(".flash")
        finally:
            await browser.close()

    statuses = dict(await Observation.filter(id__in=ids).values_list("id", "review_status"))
    assert [str(statuses[i]) for i in ids] == ["verified", "rejected", "verified", "needs_info"]
    assert await ReviewDecision.filter(reviewer_id=reviewer.id).count() == 4
    print("screenshot:", tmp_path / "review-item.png")


async def test_forms_without_the_csrf_token_are_refused(client: httpx.AsyncClient) -> None:
    world = await make_world()
    await make_user("reviewer", project=world.project, username="rita")
    r = await client.post("/review/login", data={"username": "rita", "password": PASSWORD})
    assert r.status_code == 403 and "reload the page" in r.text
    page = await client.get("/review/login")
    token = page.text.split('name="csrf" value="')[1].split('"')[0]
    r = await client.post("/review/login", data={"username": "rita", "password": PASSWORD,
                                                 "csrf": token})
    assert r.status_code == 303 and r.headers["location"] == "/review/"
    r = await client.post("/review/bulk", data={"ids": "x"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"
    assert (await client.get("/review/")).status_code == 200
    assert (await client.get("/review/static/review.js")).status_code == 200


async def test_page_logins_are_throttled_like_the_api(client: httpx.AsyncClient) -> None:
    """Guessing passwords on the page instead of the API gains nothing: the
    same failures count, and past the limit even the right password waits."""
    await make_user("reviewer", username="rita")
    page = await client.get("/review/login")
    token = page.text.split('name="csrf" value="')[1].split('"')[0]
    for _ in range(5):
        r = await client.post("/review/login", data={"username": "rita", "password": "guess",
                                                     "csrf": token})
        assert r.status_code == 401
    for _ in range(5):
        r = await client.post("/api/v1/auth/login", json={"username": "rita",
                                                          "password": "guess"})
        assert r.status_code == 401
    r = await client.post("/review/login", data={"username": "rita", "password": PASSWORD,
                                                 "csrf": token})
    assert r.status_code == 429 and 60 < int(r.headers["retry-after"]) <= 15 * 60 + 1
    assert "Too many failed logins" in r.text
    r = await client.post("/review/login", data={"username": "ri\x00ta", "password": "x",
                                                 "csrf": token})
    assert r.status_code in (401, 429)  # a NUL is dropped, never a database error


async def test_pages_send_their_security_headers_and_a_strict_cookie(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/review/login")
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/review" in cookie


async def test_every_form_action_needs_the_sessions_own_csrf_token(
    client: httpx.AsyncClient,
) -> None:
    """Decision, skip, bulk and logout refuse a missing token and a token of
    another session; nothing is decided."""
    world = await make_world()
    _, [obs] = await flagged(client, world)
    await make_user("reviewer", project=world.project, username="rita")
    page = await client.get("/review/login")
    token = page.text.split('name="csrf" value="')[1].split('"')[0]
    r = await client.post("/review/login", data={"username": "rita", "password": PASSWORD,
                                                 "csrf": token})
    assert r.status_code == 303
    transport = httpx.ASGITransport(app=client._transport.app)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
        page = await other.get("/review/login")
        foreign = page.text.split('name="csrf" value="')[1].split('"')[0]
    for action, fields in ((f"/review/items/{obs.id}/decision", {"decision": "verify"}),
                           (f"/review/items/{obs.id}/skip", {}),
                           ("/review/bulk", {"ids": obs.id}), ("/review/logout", {})):
        for csrf in ({}, {"csrf": foreign}):
            r = await client.post(action, data={**fields, **csrf})
            assert r.status_code == 403, action
            assert r.json()["error"]["code"] == "csrf_failed"
    assert not await ReviewDecision.exists()
    assert (await client.get("/review/")).status_code == 200  # still signed in

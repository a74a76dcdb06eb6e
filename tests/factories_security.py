"""Factories for the security tests: one world of users in every role, an
observer's protected records with photos, and one request per route of the
app (``ROUTE_REQUESTS``) that the authorization matrix and the location-leak
test both send.

The routes come from the app itself (``app_routes``), so a route added
without a request here fails both tests.
"""

from __future__ import annotations

import base64
import contextlib
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route

from server import jobs
from server.models.accounts import User
from server.models.jobs import Job
from server.models.observations import Observation, Photo
from server.models.reference import Project, Taxon
from server.models.releases import Release
from server.models.uploads import Upload, UploadStatus
from server.releases import JOB_KIND as PUBLISH_JOB
from server.releases import publish
from tests.factories import PASSWORD, auth, make_project, make_user
from tests.factories_photos import jpeg, run_jobs
from tests.factories_sync import Device, World, make_world, observation

# Precise points of the observer's protected records: distinctive digits
# that appear nowhere else (the photos carry the same points in GPS EXIF).
SECRET_POINTS = {
    "obscured": (52.123456789, 5.987654321),
    "private": (52.246813579, 5.135792468),
    "sensitive": (51.975318642, 4.864209753),
}
TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Content-Type": "application/offset+octet-stream"}


def tus_metadata(**pairs: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in pairs.items())


# --- the routes of the app ----------------------------------------------------------

def app_routes(app: Starlette) -> set[str]:
    """Every ``METHOD path`` the app serves (a mount of static files counts as
    ``GET mount/{path}``; the HEAD Starlette adds to each GET is left out)."""
    found: set[str] = set()

    def walk(routes: list[BaseRoute], prefix: str) -> None:
        for r in routes:
            if isinstance(r, Route):
                methods = set(r.methods or ())
                if "GET" in methods:
                    methods.discard("HEAD")
                path = re.sub(r"\{(\w+):\w+\}", r"{\1}", prefix + r.path)
                found.update(f"{m} {path}" for m in methods)
            elif isinstance(r, Mount):
                if r.routes:
                    walk(list(r.routes), prefix + r.path)
                else:
                    found.add(f"GET {prefix}{r.path}/{{path}}")
            else:  # a new kind of route: make the tests look at it
                found.add(f"? {prefix}{getattr(r, 'path', r)!r}")

    walk(list(app.routes), "")
    return found


# --- the world ----------------------------------------------------------------------

@dataclass
class Secured:
    """What the security tests work on: the observer's records in ``project``."""

    app: Starlette
    world: World
    project: Project
    other_project: Project
    observer: User
    observer_token: str
    observations: dict[str, Observation]  # by SECRET_POINTS key
    photos: dict[str, Photo]  # ready photos of the obscured and the private record
    pending_photo: Photo  # a photo record still waiting for its file
    upload_id: str  # the observer's unfinished upload of ``pending_photo``
    release: Release
    users: dict[str, tuple[User, str]] = field(default_factory=dict)

    @property
    def target(self) -> Observation:
        """The record routes with an observation id are called with."""
        return self.observations["obscured"]

    @property
    def photo(self) -> Photo:
        return self.photos["obscured"]


async def _upload(client: httpx.AsyncClient, token: str, photo_id: str, data: bytes) -> None:
    r = await client.post("/api/v1/uploads/", content=data, headers={
        **TUS, **OCTET, **auth(token), "Upload-Length": str(len(data)),
        "Upload-Metadata": tus_metadata(photo_id=photo_id, filetype="image/jpeg")})
    assert r.status_code == 201 and r.headers["Upload-Offset"] == str(len(data)), r.text


async def make_secured(app: Starlette, client: httpx.AsyncClient) -> Secured:
    """The observer (a volunteer of ``project``) pushes an obscured, a private
    and a sensitive-taxon record, all waiting for review (coarse location),
    uploads photos with GPS EXIF of two of them, and starts a third upload; a
    release is published."""
    world = await make_world()
    await Taxon.filter(id=world.oak.id).update(sensitive=True)
    other_project = await make_project(slug="elsewhere")
    observer, token = await make_user("volunteer", project=world.project, username="observer")
    device = Device(client, token)
    records = {
        "obscured": observation(world, geoprivacy="obscured", notes="behind the old mill"),
        "private": observation(world, geoprivacy="private"),
        "sensitive": observation(world, taxon_id=str(world.oak.id),
                                 phenophase_id=str(world.leaves.id), intensity=None),
    }
    for name, record in records.items():
        record["latitude"], record["longitude"] = SECRET_POINTS[name]
        record["coordinate_uncertainty_m"] = 5000  # over the project's limit: a flag
    photo_records = {name: {"id": uuid.uuid4().hex[:16], "observation_id": records[of]["id"]}
                     for name, of in (("obscured", "obscured"), ("private", "private"),
                                      ("pending", "sensitive"))}
    r = await device.push({"observations": {"created": list(records.values())},
                           "photos": {"created": list(photo_records.values())}})
    assert r.status_code == 200 and r.json()["counts"]["rejected"] == 0, r.text
    for seed, name in enumerate(("obscured", "private"), start=1):
        lat, lon = SECRET_POINTS[name]
        data = jpeg(seed=seed, taken="2026:02:14 10:29:00", lat=lat, lon=lon)
        await _upload(client, token, photo_records[name]["id"], data)
    await run_jobs(app)
    r = await client.post("/api/v1/uploads/", headers={
        **TUS, **auth(token), "Upload-Length": "100000",
        "Upload-Metadata": tus_metadata(photo_id=photo_records["pending"]["id"])})
    assert r.status_code == 201, r.text
    upload_id = r.headers["Location"].rsplit("/", 1)[1]
    settings = app.state.settings
    shutil.rmtree(settings.releases_dir, ignore_errors=True)
    release = await publish(settings, app.state.database)
    observations = {name: await Observation.get(id=rec["id"]) for name, rec in records.items()}
    assert all(str(o.review_status) == "needs_review" for o in observations.values())
    photos = {name: await Photo.get(id=photo_records[name]["id"])
              for name in ("obscured", "private")}
    assert all(str(p.upload_state) == "ready" for p in photos.values())
    return Secured(
        app=app, world=world, project=world.project, other_project=other_project,
        observer=observer, observer_token=token, observations=observations, photos=photos,
        pending_photo=await Photo.get(id=photo_records["pending"]["id"]),
        upload_id=upload_id, release=release,
    )


# Who is who: (global or project role, project) for each role the tests name.
ROLE_SETUP: dict[str, tuple[str, str | None]] = {
    "volunteer": ("volunteer", "project"),
    "outsider": ("volunteer", "other_project"),
    "reviewer": ("reviewer", "project"),
    "expert": ("expert", "project"),
    "coordinator": ("coordinator", "project"),
    "admin": ("admin", None),
    "outside_reviewer": ("reviewer", "other_project"),
    "outside_coordinator": ("coordinator", "other_project"),
}


@dataclass
class Caller:
    """One role calling the app: a bearer token for the API, a session cookie
    for the reviewer pages (``role`` ``anonymous`` has neither)."""

    client: httpx.AsyncClient
    secured: Secured
    role: str
    user: User | None = None
    token: str | None = None
    csrf: str = ""

    def headers(self, **extra: str) -> dict[str, str]:
        return {**(auth(self.token) if self.token else {}), **extra}

    async def refresh_csrf(self) -> None:
        """The CSRF token of the current session (the login page shows it)."""
        page = await self.client.get("/review/login")
        self.csrf = page.text.split('name="csrf" value="')[1].split('"')[0]

    async def page_login(self) -> None:
        """Log in to the reviewer pages (anonymous: only get a CSRF token)."""
        await self.refresh_csrf()
        if self.user is not None:
            r = await self.client.post("/review/login", data={
                "username": self.user.username, "password": PASSWORD, "csrf": self.csrf})
            assert r.status_code == 303, r.text
            await self.refresh_csrf()

    def form(self, **fields: str) -> dict[str, str]:
        return {"csrf": self.csrf, **fields}


@contextlib.asynccontextmanager
async def role_client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """A client of its own (its own cookies) for one role."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def make_caller(client: httpx.AsyncClient, secured: Secured, role: str) -> Caller:
    caller = Caller(client, secured, role)
    if role == "owner":
        caller.user, caller.token = secured.observer, secured.observer_token
    elif role != "anonymous":
        name, where = ROLE_SETUP[role]
        project = getattr(secured, where) if where else None
        caller.user, caller.token = await make_user(name, project=project, username=role)
    await caller.page_login()
    return caller


# --- one request per route ------------------------------------------------------------

Send = Callable[[Caller], Awaitable[list[httpx.Response]]]


def _one(
    make: Callable[[Caller], Awaitable[httpx.Response]],
) -> Send:
    async def send(c: Caller) -> list[httpx.Response]:
        return [await make(c)]

    return send


async def _fresh_item(c: Caller) -> str:
    """A new record of the observer's waiting for review, claimed by the caller
    when the caller may claim: each role decides a record nobody touched."""
    record = observation(c.secured.world, geoprivacy="obscured", coordinate_uncertainty_m=5000)
    record["latitude"], record["longitude"] = SECRET_POINTS["obscured"]
    r = await c.client.post("/api/v1/sync/push", headers=auth(c.secured.observer_token),
                            json={"changes": {"observations": {"created": [record]}}})
    assert r.json()["counts"]["applied"] == 1, r.text
    await c.client.post("/api/v1/review/claims", headers=c.headers(), json={"limit": 50})
    return str(record["id"])


async def _release_files(c: Caller) -> list[httpx.Response]:
    release = c.secured.release
    paths = [f["path"] for f in release.files] + ["SHA256SUMS"]
    return [await c.client.get(f"/datasets/{release.version}/{p}", headers=c.headers())
            for p in paths]


async def _derivatives(c: Caller) -> list[httpx.Response]:
    return [await c.client.get(f"/api/v1/photos/{p.id}/derivatives/{size}", headers=c.headers())
            for p in c.secured.photos.values() for size in p.derivative_sizes]


async def _originals(c: Caller) -> list[httpx.Response]:
    return [await c.client.get(f"/api/v1/photos/{p.id}/original", headers=c.headers())
            for p in c.secured.photos.values()]


async def _photo_records(c: Caller) -> list[httpx.Response]:
    return [await c.client.get(f"/api/v1/photos/{p.id}", headers=c.headers())
            for p in c.secured.photos.values()]


async def _review_details(c: Caller) -> list[httpx.Response]:
    return [await c.client.get(f"/api/v1/review/observations/{o.id}", headers=c.headers())
            for o in c.secured.observations.values()]


async def _review_items(c: Caller) -> list[httpx.Response]:
    return [await c.client.get(f"/review/items/{o.id}", follow_redirects=True)
            for o in c.secured.observations.values()]


async def _pull(c: Caller) -> list[httpx.Response]:
    """A first pull, every page (small pages: a page boundary may not leak either)."""
    responses = []
    cursor: str | None = None
    for _ in range(100):
        params = {"schema_version": "1", "limit": "20"}
        if cursor is not None:
            params["last_pulled_at"] = cursor
        r = await c.client.get("/api/v1/sync/pull", params=params, headers=c.headers())
        responses.append(r)
        if r.status_code != 200 or not r.json()["has_more"]:
            return responses
        cursor = str(r.json()["timestamp"])
    raise AssertionError("the pull did not end in 100 pages")


async def _push(c: Caller) -> httpx.Response:
    """An edit of the target: a conflict reply must never carry another's record."""
    target = c.secured.target
    record = observation(c.secured.world, id=target.id, notes="edited",
                         latitude=52.0, longitude=5.0)
    return await c.client.post("/api/v1/sync/push", params={"last_pulled_at": "1"},
                               json={"changes": {"observations": {"updated": [record]}}},
                               headers=c.headers())


async def _logout(c: Caller) -> httpx.Response:
    """With a token of its own, so that the caller's token keeps working."""
    token = None
    if c.user is not None:
        from server.tokens import issue

        token, _ = await issue(c.user)
    return await c.client.post("/api/v1/auth/logout", headers=auth(token) if token else {})


async def _page_login(c: Caller) -> httpx.Response:
    r = await c.client.post("/review/login", data=c.form(
        username=c.user.username if c.user else "nobody", password=PASSWORD))
    await c.refresh_csrf()  # the session (and its CSRF token) are new
    return r


async def _page_logout(c: Caller) -> httpx.Response:
    # The session lives in its signed cookie only: put it back afterwards
    # (no second password check, which is slow on purpose).
    kept = dict(c.client.cookies)
    r = await c.client.post("/review/logout", data=c.form(), follow_redirects=True)
    c.client.cookies.clear()
    for name, value in kept.items():
        c.client.cookies.set(name, value, path="/review")
    await c.refresh_csrf()
    return r


async def _tus_create(c: Caller) -> httpx.Response:
    return await c.client.post("/api/v1/uploads/", headers=c.headers(**TUS, **{
        "Upload-Length": "1000",
        "Upload-Metadata": tus_metadata(photo_id=c.secured.pending_photo.id)}))


async def _tus_patch(c: Caller) -> httpx.Response:
    upload = await Upload.get(id=c.secured.upload_id)
    return await c.client.patch(
        f"/api/v1/uploads/{upload.id}", content=b"\xff\xd8\xff" * 10,
        headers=c.headers(**TUS, **OCTET, **{"Upload-Offset": str(upload.offset)}))


async def _tus_delete(c: Caller) -> httpx.Response:
    """A fresh upload of the observer's, so that the one in the world stays."""
    fresh = await Upload.create(
        id=uuid.uuid4().hex, photo_id=c.secured.pending_photo.id,
        user_id=c.secured.observer.id, length=1000, metadata={},
        storage_key="uploads/" + uuid.uuid4().hex, state=UploadStatus.RECEIVING,
        expires_at=(await Upload.get(id=c.secured.upload_id)).expires_at,
    )
    return await c.client.delete(f"/api/v1/uploads/{fresh.id}", headers=c.headers(**TUS))


async def _release_claim(c: Caller) -> httpx.Response:
    item = await _fresh_item(c)
    return await c.client.delete(f"/api/v1/review/claims/{item}", headers=c.headers())


async def _decide(c: Caller) -> httpx.Response:
    item = await _fresh_item(c)
    return await c.client.post("/api/v1/review/decisions", headers=c.headers(), json={
        "observation_id": item, "decision": "needs_info"})


async def _decide_bulk(c: Caller) -> httpx.Response:
    item = await _fresh_item(c)
    return await c.client.post("/api/v1/review/decisions/bulk", headers=c.headers(), json={
        "decisions": [{"observation_id": item, "decision": "needs_info"}]})


async def _page_decide(c: Caller) -> httpx.Response:
    item = await _fresh_item(c)
    return await c.client.post(f"/review/items/{item}/decision",
                                data=c.form(decision="needs_info"), follow_redirects=True)


async def _page_bulk(c: Caller) -> httpx.Response:
    item = await _fresh_item(c)
    return await c.client.post("/review/bulk", data=c.form(ids=item), follow_redirects=True)


async def _publish(c: Caller) -> httpx.Response:
    # Each caller publishes from a state with no publish queued by the caller before.
    await Job.filter(kind=PUBLISH_JOB).delete()
    return await c.client.post("/api/v1/datasets", json={}, headers=c.headers())


async def _publish_status(c: Caller) -> httpx.Response:
    job = await jobs.enqueue(PUBLISH_JOB, {"version": "9.9.9", "user_id": None})
    return await c.client.get(f"/api/v1/datasets/jobs/{job.id}", headers=c.headers())


async def _me_join(c: Caller) -> httpx.Response:
    return await c.client.post(f"/api/v1/projects/{c.secured.project.slug}/join",
                               headers=c.headers())


def _get(path: str | Callable[[Secured], str], **kw: Any) -> Send:
    async def send(c: Caller) -> list[httpx.Response]:
        where = path(c.secured) if callable(path) else path
        return [await c.client.get(where, headers=c.headers(), **kw)]

    return send


ROUTE_REQUESTS: dict[str, Send] = {
    # service
    "GET /health": _get("/health"),
    "GET /openapi.json": _get("/openapi.json"),
    "GET /metrics": _get("/metrics"),
    # accounts
    "POST /api/v1/auth/register": _one(lambda c: c.client.post(
        "/api/v1/auth/register", headers=c.headers(),
        json={"username": f"new-{c.role}", "password": "long-enough-pw"})),
    "POST /api/v1/auth/login": _one(lambda c: c.client.post("/api/v1/auth/login", json={
        "username": c.user.username if c.user else "nobody", "password": PASSWORD})),
    "POST /api/v1/auth/logout": _one(_logout),
    "GET /api/v1/me": _get("/api/v1/me"),
    # projects
    "GET /api/v1/projects": _get("/api/v1/projects"),
    "POST /api/v1/projects": _one(lambda c: c.client.post(
        "/api/v1/projects", headers=c.headers(),
        json={"slug": f"new-{c.role}", "name": f"New {c.role}"})),
    "GET /api/v1/projects/{slug}": _get(lambda s: f"/api/v1/projects/{s.project.slug}"),
    "POST /api/v1/projects/{slug}/join": _one(_me_join),
    "PUT /api/v1/projects/{slug}/members/{username}": _one(lambda c: c.client.put(
        f"/api/v1/projects/{c.secured.project.slug}/members/observer",
        headers=c.headers(), json={"role": "volunteer"})),
    # vocabulary
    "GET /api/v1/taxa": _get("/api/v1/taxa"),
    "GET /api/v1/phenophases": _get("/api/v1/phenophases"),
    # sync
    "GET /api/v1/sync/pull": _pull,
    "POST /api/v1/sync/push": _one(_push),
    # photos: the record, derivatives, originals, tus uploads
    "GET /api/v1/photos/{photo_id}": _photo_records,
    "GET /api/v1/photos/{photo_id}/derivatives/{size}": _derivatives,
    "GET /api/v1/photos/{photo_id}/original": _originals,
    "OPTIONS /api/v1/uploads/": _one(lambda c: c.client.options("/api/v1/uploads/")),
    "POST /api/v1/uploads/": _one(_tus_create),
    "OPTIONS /api/v1/uploads/{upload_id}": _one(
        lambda c: c.client.options(f"/api/v1/uploads/{c.secured.upload_id}")),
    "HEAD /api/v1/uploads/{upload_id}": _one(lambda c: c.client.head(
        f"/api/v1/uploads/{c.secured.upload_id}", headers=c.headers(**TUS))),
    "PATCH /api/v1/uploads/{upload_id}": _one(_tus_patch),
    "DELETE /api/v1/uploads/{upload_id}": _one(_tus_delete),
    # review API
    "GET /api/v1/review/queue": _get("/api/v1/review/queue"),
    "POST /api/v1/review/claims": _one(lambda c: c.client.post(
        "/api/v1/review/claims", headers=c.headers(), json={"limit": 10})),
    "DELETE /api/v1/review/claims/{observation_id}": _one(_release_claim),
    "GET /api/v1/review/observations/{observation_id}": _review_details,
    "POST /api/v1/review/decisions": _one(_decide),
    "POST /api/v1/review/decisions/bulk": _one(_decide_bulk),
    "GET /api/v1/review/stats": _get("/api/v1/review/stats"),
    "GET /api/v1/review/flags": _get("/api/v1/review/flags"),
    # open data
    "GET /api/v1/datasets": _get("/api/v1/datasets"),
    "POST /api/v1/datasets": _one(_publish),
    "GET /api/v1/datasets/jobs/{job_id}": _one(_publish_status),
    "GET /datasets": _get("/datasets"),
    "GET /datasets/{version}/{path}": _release_files,
    # the reviewer pages (redirects followed: a denial may arrive by redirect)
    "GET /review/": _get("/review/", follow_redirects=True),
    "GET /review/login": _get("/review/login"),
    "POST /review/login": _one(_page_login),
    "POST /review/logout": _one(_page_logout),
    "GET /review/next": _get("/review/next", follow_redirects=True),
    "GET /review/items/{observation_id}": _review_items,
    "POST /review/items/{observation_id}/decision": _one(_page_decide),
    "POST /review/items/{observation_id}/skip": _one(lambda c: c.client.post(
        f"/review/items/{c.secured.target.id}/skip", data=c.form(), follow_redirects=True)),
    "POST /review/bulk": _one(_page_bulk),
    "GET /review/static/{path}": _get("/review/static/review.js"),
}

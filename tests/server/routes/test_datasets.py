from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from server import jobs
from server.models.jobs import Job
from server.models.releases import Release
from tests.factories import auth, make_project, make_user
from tests.factories_observations import make_observation, make_phenophase, make_taxon


@pytest.fixture
async def releases(db: Starlette) -> AsyncIterator[Path]:
    folder = db.state.settings.releases_dir
    shutil.rmtree(folder, ignore_errors=True)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


async def some_observations() -> None:
    project = await make_project()
    user, _ = await make_user(project=project)
    taxon = await make_taxon(scientific_name="Corylus avellana")
    phase = await make_phenophase(code="open_flowers")
    await make_observation(user, project, taxon, phase)


def block(folder: Path, on: bool) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    if on:
        folder.write_text("in the way")
    else:
        folder.unlink()


async def publish_now(app: Starlette) -> int:
    """Run the queued jobs as the app's workers would (the test app has none)."""
    return await jobs.drain(app.state.database, app.state.jobs.handlers)


async def test_coordinators_publish_and_anyone_lists(
    releases: Path, client: httpx.AsyncClient, db: Starlette
) -> None:
    await some_observations()
    _, volunteer = await make_user("volunteer")
    _, coordinator = await make_user("coordinator")
    assert (await client.post("/api/v1/datasets", json={})).status_code == 401
    denied = await client.post("/api/v1/datasets", json={}, headers=auth(volunteer))
    assert denied.status_code == 403
    assert (await client.get("/api/v1/datasets")).json() == {
        "latest": None, "releases": [], "publishing": []}

    r = await client.post("/api/v1/datasets", json={}, headers=auth(coordinator))
    assert r.status_code == 202, r.text
    queued = r.json()
    assert queued["version"] == "1.0.0" and queued["state"] == "queued"
    assert r.headers["location"] == queued["status_url"]
    # Not published yet: the listing shows it publishing, a second publish waits.
    listed = (await client.get("/api/v1/datasets")).json()
    assert listed["releases"] == [] and [p["version"] for p in listed["publishing"]] == ["1.0.0"]
    busy = await client.post("/api/v1/datasets", json={}, headers=auth(coordinator))
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "publish_in_progress"
    status = await client.get(queued["status_url"], headers=auth(coordinator))
    assert status.json()["state"] == "queued" and status.json()["release"] is None
    assert (await client.get(queued["status_url"], headers=auth(volunteer))).status_code == 403

    assert await publish_now(db) == 1
    status = (await client.get(queued["status_url"], headers=auth(coordinator))).json()
    assert status["state"] == "done", status
    assert status["release"]["version"] == "1.0.0"
    assert status["release"]["counts"]["observations"] == 1
    assert (await client.get("/api/v1/datasets")).json()["publishing"] == []

    again = await client.post("/api/v1/datasets", json={"version": "1.0.0"},
                              headers=auth(coordinator))
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_exists"
    bad = await client.post("/api/v1/datasets", json={"version": "v2"},
                            headers=auth(coordinator))
    assert bad.status_code == 422
    lower = await client.post("/api/v1/datasets", json={"version": "0.1.0"},
                              headers=auth(coordinator))
    assert lower.status_code == 422 and lower.json()["error"]["code"] == "invalid_version"
    r = await client.post("/api/v1/datasets", json={"version": "1.0.1"},
                          headers=auth(coordinator))
    assert r.status_code == 202
    assert await publish_now(db) == 1

    listed = (await client.get("/api/v1/datasets")).json()
    assert listed["latest"] == "1.0.1"
    assert [(r["version"], r["latest"]) for r in listed["releases"]] == [
        ("1.0.1", True), ("1.0.0", False)]
    urls = {f["path"]: f["url"] for f in listed["releases"][0]["files"]}
    assert urls["data/observations-2024.parquet"] == (
        "/datasets/1.0.1/data/observations-2024.parquet")
    assert "SHA256SUMS" in urls and "datapackage.json" in urls
    assert await Release.filter(version="1.0.1").count() == 1
    missing = await client.get("/api/v1/datasets/jobs/999999", headers=auth(coordinator))
    assert missing.status_code == 404


async def test_a_failed_publish_shows_its_error_and_leaves_no_release(
    releases: Path, client: httpx.AsyncClient, db: Starlette
) -> None:
    await some_observations()
    _, coordinator = await make_user("coordinator")
    queued = (await client.post("/api/v1/datasets", json={}, headers=auth(coordinator))).json()
    block(releases, True)  # the releases folder is a file: every attempt fails
    await Job.filter(id=queued["job"]).update(max_attempts=1)
    assert await publish_now(db) == 1
    status = (await client.get(queued["status_url"], headers=auth(coordinator))).json()
    assert status["state"] == "failed" and status["error"] and status["release"] is None
    assert await Release.all().count() == 0
    block(releases, False)

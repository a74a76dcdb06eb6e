from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

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


async def test_coordinators_publish_and_anyone_lists(
    releases: Path, client: httpx.AsyncClient
) -> None:
    await some_observations()
    _, volunteer = await make_user("volunteer")
    _, coordinator = await make_user("coordinator")
    assert (await client.post("/api/v1/datasets", json={})).status_code == 401
    denied = await client.post("/api/v1/datasets", json={}, headers=auth(volunteer))
    assert denied.status_code == 403
    assert (await client.get("/api/v1/datasets")).json() == {"latest": None, "releases": []}

    r = await client.post("/api/v1/datasets", json={}, headers=auth(coordinator))
    assert r.status_code == 201, r.text
    assert r.json()["version"] == "1.0.0" and r.json()["counts"]["observations"] == 1
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
    assert r.status_code == 201

    listed = (await client.get("/api/v1/datasets")).json()
    assert listed["latest"] == "1.0.1"
    assert [(r["version"], r["latest"]) for r in listed["releases"]] == [
        ("1.0.1", True), ("1.0.0", False)]
    urls = {f["path"]: f["url"] for f in listed["releases"][0]["files"]}
    assert urls["data/observations-2024.parquet"] == (
        "/datasets/1.0.1/data/observations-2024.parquet")
    assert "SHA256SUMS" in urls and "datapackage.json" in urls
    assert await Release.filter(version="1.0.1").count() == 1

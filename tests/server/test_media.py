"""Serving: public derivatives without metadata, originals to the few who may see them."""

from __future__ import annotations

import io

import httpx
from PIL import Image
from starlette.applications import Starlette

from tests.factories import auth, make_project, make_user
from tests.factories_photos import jpeg, make_observation, make_photo, run_jobs
from tests.server.test_uploads import upload_file


async def test_derivatives_are_public_and_originals_are_not(
    client: httpx.AsyncClient, db: Starlette
) -> None:
    project = await make_project()
    owner, owner_token = await make_user(project=project)
    _, reviewer = await make_user("reviewer", project=project)
    _, volunteer = await make_user("volunteer", project=project)
    _, outsider_reviewer = await make_user("reviewer", project=await make_project())
    _, admin = await make_user("admin")
    photo = await make_photo(owner, await make_observation(owner, project))
    data = jpeg(size=(2500, 1500))
    r = await client.get(f"/api/v1/photos/{photo.id}/derivatives/320")
    assert r.status_code == 404 and r.json()["error"]["code"] == "photo_not_ready"
    assert (await upload_file(client, owner_token, photo.id, data)).status_code == 204
    await run_jobs(db)

    for size in (320, 1024, 2048):
        r = await client.get(f"/api/v1/photos/{photo.id}/derivatives/{size}")
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        assert max(Image.open(io.BytesIO(r.content)).size) == size
        assert b"Exif" not in r.content and b"Phenocam" not in r.content
        assert "immutable" in r.headers["cache-control"]
        again = await client.get(f"/api/v1/photos/{photo.id}/derivatives/{size}",
                                 headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304
    for bad in ("999", "abc", "..%2Foriginal"):
        r = await client.get(f"/api/v1/photos/{photo.id}/derivatives/{bad}")
        assert r.status_code == 404 and "error" in r.json()

    original = f"/api/v1/photos/{photo.id}/original"
    assert (await client.get(original)).status_code == 401
    for token in (owner_token, reviewer, admin):
        r = await client.get(original, headers=auth(token))
        assert r.status_code == 200 and r.content == data
        assert r.headers["cache-control"] == "private, no-store"
        assert f'filename="{photo.id}.jpg"' in r.headers["content-disposition"]
    for token in (volunteer, outsider_reviewer):
        r = await client.get(original, headers=auth(token))
        assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied"
        r = await client.get(f"/api/v1/photos/{photo.id}", headers=auth(token))
        assert r.status_code == 404
    assert (await client.get("/api/v1/photos/nope/original", headers=auth(admin))).status_code \
        == 404

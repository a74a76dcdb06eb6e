"""Open-data releases: list them (anyone), publish one (coordinators, admins).

The files themselves download from ``/datasets/{version}/{path}``, a plain
route with HTTP Range support (``server/datasets.py``).
"""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from server.endpoint import Access, Call, Endpoint
from server.models.releases import Release
from server.releases import publish, release_dict


async def list_releases(call: Call) -> Response:
    releases = await Release.all().order_by("-id")
    base = call.settings.public_url
    return JSONResponse({
        "latest": releases[0].version if releases else None,
        "releases": [release_dict(r, latest=i == 0, base=base) for i, r in enumerate(releases)],
    })


async def create_release(call: Call) -> Response:
    user = call.require_user()
    release = await publish(
        call.settings, call.request.app.state.database,
        version=call.body.get("version"), user=user,
    )
    return JSONResponse(
        release_dict(release, latest=True, base=call.settings.public_url), status_code=201
    )


ENDPOINTS = [
    Endpoint("GET", "/api/v1/datasets", list_releases,
             "Open-data releases, newest first, the latest marked, with a URL per file",
             Access.PUBLIC, tags=("datasets",)),
    Endpoint("POST", "/api/v1/datasets", create_release,
             "Publish a release (coordinators, admins); 409 when the version exists",
             Access.COORDINATOR, request_schema="release-create", status=201,
             errors={409: "That version exists already (releases never change)."},
             tags=("datasets",)),
]

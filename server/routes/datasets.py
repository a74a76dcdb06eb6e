"""Open-data releases: list them (anyone), publish one (coordinators, admins).

Publishing reads every published observation, so it is a durable job: the
request checks the version and queues it (202), the job's status URL and the
listing's ``publishing`` entries show its progress.

The files themselves download from ``/datasets/{version}/{path}``, a plain
route with HTTP Range support (``server/datasets.py``).
"""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from schemas import errors
from server.endpoint import Access, Call, Endpoint
from server.models.jobs import Job, JobState
from server.models.releases import Release
from server.releases import JOB_KIND, publish_job_dict, queue_publish, release_dict


async def list_releases(call: Call) -> Response:
    releases = await Release.all().order_by("-id")
    base = call.settings.public_url
    publishing = await Job.filter(
        kind=JOB_KIND, state__in=[JobState.QUEUED, JobState.RUNNING]
    ).order_by("id")
    return JSONResponse({
        "latest": releases[0].version if releases else None,
        "releases": [release_dict(r, latest=i == 0, base=base) for i, r in enumerate(releases)],
        "publishing": [publish_job_dict(j) for j in publishing],
    })


async def create_release(call: Call) -> Response:
    user = call.require_user()
    job = await queue_publish(call.settings, call.body.get("version"), user)
    call.request.app.state.jobs.notify()
    body = publish_job_dict(job)
    return JSONResponse(body, status_code=202, headers={"Location": body["status_url"]})


async def publish_status(call: Call) -> Response:
    try:
        job_id = int(call.request.path_params["job_id"])
    except ValueError:
        job_id = 0
    job = await Job.get_or_none(id=job_id, kind=JOB_KIND)
    if job is None:
        raise errors.NotFound("No publish job has that id.")
    body = publish_job_dict(job)
    release = await Release.get_or_none(version=body["version"])
    body["release"] = (
        release_dict(release, latest=False, base=call.settings.public_url)
        if release is not None and job.state == JobState.DONE else None
    )
    return JSONResponse(body)


ENDPOINTS = [
    Endpoint("GET", "/api/v1/datasets", list_releases,
             "Open-data releases, newest first, the latest marked, with a URL per file",
             Access.PUBLIC, tags=("datasets",)),
    Endpoint("POST", "/api/v1/datasets", create_release,
             "Queue the publishing of a release (coordinators, admins); 202 with a status "
             "URL, 409 when the version exists or a publish is in progress",
             Access.COORDINATOR, request_schema="release-create", status=202,
             errors={409: "That version exists already (releases never change), or a "
                          "publish is in progress."},
             tags=("datasets",)),
    Endpoint("GET", "/api/v1/datasets/jobs/{job_id}", publish_status,
             "The state of a publish job (queued, running, done, failed), with the release "
             "once done", Access.COORDINATOR, tags=("datasets",)),
]

"""Prometheus metrics, served at ``/metrics``.

With several worker processes, set ``PROMETHEUS_MULTIPROC_DIR`` (read by
prometheus_client itself, and by ``server.settings``) to a shared empty
directory so that every worker's counts add up (docs/operations.md).
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from starlette.requests import Request
from starlette.responses import Response

from schemas.observation import ReviewStatus

REQUESTS = Counter(
    "phenosync_http_requests_total", "HTTP requests answered.", ["method", "route", "status"]
)
LATENCY = Histogram(
    "phenosync_http_request_duration_seconds", "Time to answer an HTTP request.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
UPLOAD_BYTES = Counter("phenosync_upload_bytes_total", "Photo bytes received by uploads.")
SYNC_RECORDS = Counter(
    "phenosync_sync_records_total", "Records pushed, by table and result.", ["table", "status"]
)
REVIEW_QUEUE = Gauge(
    "phenosync_review_queue_depth", "Observations waiting for review.",
    multiprocess_mode="livemax",
)
JOB_BACKLOG = Gauge(
    "phenosync_job_backlog", "Background jobs waiting to run.", multiprocess_mode="livemax"
)


def _registry(multiprocess_dir: str | None) -> CollectorRegistry:
    if multiprocess_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return DEFAULT_REGISTRY


async def metrics_endpoint(request: Request) -> Response:
    from server.models.jobs import Job, JobState
    from server.models.observations import Observation

    REVIEW_QUEUE.set(await Observation.filter(review_status=ReviewStatus.NEEDS_REVIEW).count())
    JOB_BACKLOG.set(await Job.filter(state=JobState.QUEUED).count())
    registry = _registry(request.app.state.settings.metrics_multiproc_dir)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

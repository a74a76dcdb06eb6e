from __future__ import annotations

import httpx

from server.models.observations import Observation
from tests.factories_sync import make_device, make_world, observation


async def test_metrics_count_requests_and_the_review_queue(client: httpx.AsyncClient) -> None:
    world = await make_world()
    phone = await make_device(client, world)
    await phone.push({"observations": {"created": [observation(world), observation(world)]}})
    await Observation.all().update(review_status="needs_review")
    await client.get("/api/v1/taxa")
    r = await client.get("/metrics")
    assert r.status_code == 200
    text = r.text
    assert "phenosync_review_queue_depth 2.0" in text
    assert 'phenosync_http_requests_total{method="GET",route="/api/v1/taxa",status="200"}' in text
    assert "phenosync_http_request_duration_seconds_bucket" in text
    assert "phenosync_job_backlog 0.0" in text
    assert "phenosync_upload_bytes_total" in text

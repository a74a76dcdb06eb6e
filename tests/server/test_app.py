from __future__ import annotations

import httpx

from server.app import create_app
from server.settings import Settings


async def test_health_checks_the_database(client: httpx.AsyncClient) -> None:
    r = await client.get("/health")
    assert r.status_code == 200
    assert r.json()["database"] == "ok"


async def test_health_is_503_when_the_database_is_unreachable(tmp_path: object) -> None:
    settings = Settings.from_env(
        {
            "PHENOSYNC_DATA_DIR": str(tmp_path),
            # Nothing listens on port 1: the pool cannot connect.
            "PHENOSYNC_DATABASE_URL": "postgres://nobody@127.0.0.1:1/none",
        }
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            r = await c.get("/health")
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "service_unavailable"

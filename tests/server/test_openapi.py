from __future__ import annotations

import httpx
from starlette.routing import Route

from server.endpoint import Access
from server.routes import ENDPOINTS

# The only writes anyone may make without a token: getting one.
PUBLIC_WRITES = {("POST", "/api/v1/auth/register"), ("POST", "/api/v1/auth/login")}


async def test_openapi_describes_every_api_route(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    served = {
        (method, r.path)
        for r in client._transport.app.routes  # type: ignore[attr-defined]
        if isinstance(r, Route) and r.path.startswith("/api/v1")
        for method in (r.methods or set()) - {"HEAD"}
    }
    # HEAD comes with every GET; a tus upload's HEAD is documented in docs/api.md.
    described = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served |= {("HEAD", r.path) for r in client._transport.app.routes  # type: ignore[attr-defined]
               if isinstance(r, Route) and r.path.startswith("/api/v1")
               and r.methods == {"HEAD"}}
    assert served and served == described
    for ref in _refs(doc):
        name = ref.rsplit("/", 1)[1]
        assert name in doc["components"]["schemas"], ref


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_write_needs_a_token() -> None:
    for ep in ENDPOINTS:
        if ep.method != "GET" and (ep.method, ep.path) not in PUBLIC_WRITES:
            assert ep.access is not Access.PUBLIC, f"{ep.method} {ep.path} is open to anyone"


async def test_writes_without_a_token_are_401_and_change_nothing(
    client: httpx.AsyncClient,
) -> None:
    for ep in ENDPOINTS:
        if ep.method == "GET" or (ep.method, ep.path) in PUBLIC_WRITES:
            continue
        path = ep.path.replace("{slug}", "x").replace("{username}", "y")
        r = await client.request(ep.method, path, json={})
        assert r.status_code == 401, (ep.method, path, r.text)

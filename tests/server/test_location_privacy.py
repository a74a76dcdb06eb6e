"""No precise location of another user's obscured or private record, or of a
record of a sensitive taxon, reaches anyone the rule does not allow, through
any route.

The rule (docs/review.md, "Who sees a precise location"): the observer, the
reviewers, experts and coordinators of the record's project, and admins see
it; reviewing needs it (the area and photo-position checks).  Everyone else
sees generalised coordinates (releases) or none.

The observer's records carry distinctive points, and their photos carry the
same points in GPS EXIF (``tests/factories_security.py``).  Every route of
the app (the request list is checked against the app's routes) is called as
each role the rule keeps out, and every response is scanned: text in any
rounding from 4 decimals on (dot or comma), numbers in JSON, raw doubles,
decoded Parquet values, zip members, and the EXIF of images.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from typing import Any

import pyarrow.parquet as pq
from PIL import Image
from starlette.applications import Starlette

from tests.factories_security import (
    ROUTE_REQUESTS,
    SECRET_POINTS,
    Caller,
    app_routes,
    make_caller,
    make_secured,
    role_client,
)

KEPT_OUT = ("anonymous", "volunteer", "outsider", "outside_reviewer", "outside_coordinator")


def _renderings(x: float) -> set[str]:
    """``x`` rounded and cut to 4-9 decimals, with a dot and with a comma."""
    full = f"{x:.12f}"
    dot = full.index(".")
    found = set()
    for n in range(4, 10):
        for text in (f"{x:.{n}f}", full[: dot + 1 + n]):
            found |= {text, text.replace(".", ",")}
    return found


NEEDLES = {text: name for name, point in SECRET_POINTS.items() for x in point
           for text in _renderings(x)}
NUMBERS = [(x, name) for name, point in SECRET_POINTS.items() for x in point]


def _near(value: float) -> str | None:
    for x, name in NUMBERS:
        if abs(value - x) < 1e-4:
            return name
    return None


def _scan_values(value: Any, where: str) -> list[str]:
    if isinstance(value, float):
        name = _near(value)
        return [f"{where}: {value!r} is the {name} point"] if name else []
    if isinstance(value, str):
        return [f"{where}: {needle!r} ({name})" for needle, name in NEEDLES.items()
                if needle in value]
    if isinstance(value, dict):
        return [f for k, v in value.items() for f in _scan_values(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [f for v in value for f in _scan_values(v, where)]
    return []


def _gps(image: Image.Image) -> dict[int, Any]:
    return dict(image.getexif().get_ifd(0x8825))


def scan(data: bytes, where: str) -> list[str]:
    """Every trace of a secret point in ``data``, whatever its format."""
    found = _scan_values(data.decode("utf-8", errors="replace"), where)
    for x, name in NUMBERS:
        for packed in (struct.pack("<d", x), struct.pack(">d", x)):
            if packed in data:
                found.append(f"{where}: the {name} point as a raw double")
    if data.startswith(b"PAR1"):
        table = pq.read_table(io.BytesIO(data))
        found += _scan_values(table.to_pylist(), where)
        meta = table.schema.metadata or {}
        found += _scan_values([k.decode() + v.decode("utf-8", "replace")
                               for k, v in meta.items()], where + " (metadata)")
    elif data.startswith(b"PK\x03\x04"):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.namelist():
                found += scan(archive.read(member), f"{where}!{member}")
    elif data[:3] == b"\xff\xd8\xff" or data[:8] == b"\x89PNG\r\n\x1a\n" or data[8:12] == b"WEBP":
        with Image.open(io.BytesIO(data)) as image:
            if _gps(image):
                found.append(f"{where}: GPS EXIF {_gps(image)}")
    else:
        try:
            found += _scan_values(json.loads(data), where)
        except ValueError:
            pass
    return found


async def scan_every_route(caller: Caller) -> tuple[list[str], int]:
    findings: list[str] = []
    scanned = 0
    for key, send in ROUTE_REQUESTS.items():
        for response in await send(caller):
            assert response.status_code < 500, f"{key}: {response.text[:300]}"
            where = f"{caller.role} {key} ({response.request.method} {response.url.path})"
            findings += scan(response.content, where)
            findings += scan("\n".join(f"{k}: {v}" for k, v in response.headers.items())
                             .encode(), where + " headers")
            scanned += 1
    return findings, scanned


def test_every_route_is_scanned(app: Starlette) -> None:
    assert set(ROUTE_REQUESTS) == app_routes(app)


async def test_precise_locations_reach_only_those_the_rule_allows(db: Starlette) -> None:
    async with role_client(db) as client:
        secured = await make_secured(db, client)
    findings: list[str] = []
    for role in KEPT_OUT:
        async with role_client(db) as client:
            found, scanned = await scan_every_route(await make_caller(client, secured, role))
            findings += found
            assert scanned >= len(ROUTE_REQUESTS) + 15  # several files, photos, records
    assert not findings, "\n".join(findings)

    # The rule's other half, which also proves that the scan finds the points.
    async with role_client(db) as client:
        owner = await make_caller(client, secured, "owner")
        pulled = await ROUTE_REQUESTS["GET /api/v1/sync/pull"](owner)
        seen = {f.rsplit("(", 1)[-1] for r in pulled for f in scan(r.content, "pull")}
        assert seen >= {"obscured)", "private)", "sensitive)"}
    async with role_client(db) as client:
        reviewer = await make_caller(client, secured, "reviewer")
        for name, obs in secured.observations.items():
            r = await client.get(f"/api/v1/review/observations/{obs.id}",
                                 headers=reviewer.headers())
            assert (r.json()["latitude"], r.json()["longitude"]) == SECRET_POINTS[name]
            assert scan(r.content, "detail")
        for photo in secured.photos.values():
            original = await client.get(f"/api/v1/photos/{photo.id}/original",
                                        headers=reviewer.headers())
            assert any("GPS EXIF" in f for f in scan(original.content, "original"))
            for size in photo.derivative_sizes:
                derivative = await client.get(f"/api/v1/photos/{photo.id}/derivatives/{size}")
                assert derivative.status_code == 200
                assert b"Exif\x00\x00" not in derivative.content  # no metadata at all

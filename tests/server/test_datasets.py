"""Release files over HTTP (Range requests, remote Parquet reading by
pyarrow and DuckDB through a real uvicorn server) and the datasets page."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import duckdb
import fsspec
import fsspec.implementations.http
import httpx
import pyarrow.parquet as pq
import pytest
import uvicorn
from starlette.applications import Starlette

from server.releases import publish
from tests.factories import make_project, make_user
from tests.factories_observations import make_observation, make_phenophase, make_taxon


@pytest.fixture
async def published(db: Starlette) -> AsyncIterator[Path]:
    folder = db.state.settings.releases_dir
    shutil.rmtree(folder, ignore_errors=True)
    project = await make_project()
    user, _ = await make_user(project=project)
    hazel = await make_taxon(scientific_name="Corylus avellana")
    phase = await make_phenophase(code="open_flowers", name="Open flowers")
    # Three years at one site: a "no" a week before the first "yes".
    for year, onset in ((2022, 40), (2023, 52), (2024, 35)):
        for day, status in ((onset - 7, "no"), (onset, "yes")):
            when = datetime(year, 1, 1, 12, tzinfo=UTC).replace(day=1)
            when = when.fromordinal(when.toordinal() + day - 1).replace(tzinfo=UTC)
            await make_observation(user, project, hazel, phase, status=status,
                                   observed_at=when, latitude=52.1, longitude=5.1)
    await publish(db.state.settings, db.state.database)
    yield folder / "1.0.0"
    shutil.rmtree(folder, ignore_errors=True)


async def test_files_download_whole_and_by_range(
    published: Path, client: httpx.AsyncClient
) -> None:
    url = "/datasets/1.0.0/data/observations-2024.parquet"
    whole = await client.get(url)
    assert whole.status_code == 200
    assert whole.content == (published / "data" / "observations-2024.parquet").read_bytes()
    assert whole.headers["accept-ranges"] == "bytes"
    tail = await client.get(url, headers={"Range": "bytes=-8"})
    assert tail.status_code == 206
    assert tail.content == whole.content[-8:] and tail.content.endswith(b"PAR1")
    part = await client.get(url, headers={"Range": "bytes=4-99"})
    assert part.status_code == 206 and part.content == whole.content[4:100]
    sums = (await client.get("/datasets/1.0.0/SHA256SUMS")).text
    assert f"{hashlib.sha256(whole.content).hexdigest()}  data/observations-2024.parquet" in sums
    for missing in ("/datasets/9.9.9/README.md", "/datasets/1.0.0/../../secret_key",
                    "/datasets/1.0.0/nothing.txt"):
        r = await client.get(missing)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


@pytest.fixture
async def server_url(db: Starlette) -> AsyncIterator[str]:
    """The app on a real socket (127.0.0.1, an ephemeral port), for third-party clients."""
    config = uvicorn.Config(db, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):  # bounded: at most 5 s
        if server.started:
            break
        await asyncio.sleep(0.01)  # noqa: ASYNC110 - uvicorn offers a flag, not an event
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


class HTTPFileSystem(fsspec.implementations.http.HTTPFileSystem):  # type: ignore[misc]
    """fsspec's HTTP filesystem plus ``modified`` (from Last-Modified), which
    DuckDB asks of a registered filesystem.  DuckDB's own httpfs extension
    would be downloaded at run time, which the tests may not do."""

    def modified(self, path: str) -> datetime:
        head = httpx.head(path)
        return parsedate_to_datetime(head.headers["last-modified"])


def read_remote(url: str) -> tuple[int, int, int]:
    """pyarrow and DuckDB, reading over HTTP through fsspec (Range requests)."""
    http = HTTPFileSystem()
    with http.open(url, "rb", block_size=4096) as handle:
        table = pq.read_table(handle)
    con = duckdb.connect()
    con.register_filesystem(http)
    (count,) = con.execute(f"SELECT count(*) FROM read_parquet('{url}')").fetchone()  # type: ignore[misc]
    (version,) = con.execute(  # type: ignore[misc]
        f"SELECT decode(value) FROM parquet_kv_metadata('{url}') "
        "WHERE decode(key) = 'dataset_version'"
    ).fetchone()
    return table.num_rows, count, int(version.split(".")[0])


async def test_pyarrow_and_duckdb_read_a_release_over_http(
    published: Path, server_url: str
) -> None:
    url = f"{server_url}/datasets/1.0.0/data/observations-2024.parquet"
    rows, count, major = await asyncio.to_thread(read_remote, url)
    assert (rows, count, major) == (2, 2, 1)


async def test_the_datasets_page_shows_releases_citation_snippets_and_a_chart(
    published: Path, client: httpx.AsyncClient
) -> None:
    r = await client.get("/datasets")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "Version 1.0.0" in page and "latest" in page
    assert "Cite as:" in page and "version 1.0.0" in page
    assert "pd.read_parquet" in page and "read_parquet([" in page and "library(arrow)" in page
    assert '<svg id="onset-chart"' in page
    assert page.count("<circle") == 3  # one onset per year
    assert "http://" not in page.replace("http://testserver", "").replace(
        "http://www.w3.org", "")  # nothing loaded from elsewhere
    chosen = await client.get("/datasets", params={"pair": "Corylus avellana|open_flowers"})
    assert chosen.text.count("<circle") == 3
    none = await client.get("/datasets", params={"pair": "Nope nope|open_flowers"})
    assert none.status_code == 200 and "<circle" not in none.text


async def test_the_page_without_releases(db: Starlette, client: httpx.AsyncClient) -> None:
    shutil.rmtree(db.state.settings.releases_dir, ignore_errors=True)
    r = await client.get("/datasets")
    assert r.status_code == 200 and "No release has been published yet" in r.text

"""The public side of open data that is not JSON: the datasets page (HTML)
and the release files, served with HTTP Range support so that DuckDB,
pyarrow and R read Parquet remotely, fetching only the bytes they need."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from schemas import errors
from server.charts import onset_chart
from server.models.releases import Release
from server.releases import release_dict

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
MEDIA_TYPES = {
    ".parquet": "application/vnd.apache.parquet",
    ".csv": "text/csv; charset=utf-8",
    ".json": "application/json",
    ".zip": "application/zip",
    ".md": "text/markdown; charset=utf-8",
    ".cff": "text/plain; charset=utf-8",
}


async def release_file(request: Request) -> Response:
    version = request.path_params["version"]
    wanted = request.path_params["path"]
    release = await Release.get_or_none(version=version)
    if release is None:
        raise errors.NotFound(f"There is no release {version!r}: see /api/v1/datasets.")
    # Only files the release lists (and its SHA256SUMS) are served: no path
    # from the request ever reaches the file system unchecked.
    listed = {f["path"] for f in release.files} | {"SHA256SUMS"}
    if wanted not in listed:
        raise errors.NotFound(f"Release {version} has no file {wanted!r}.")
    path = request.app.state.settings.releases_dir / release.path / wanted
    suffix = path.suffix if path.suffix else ""
    return FileResponse(
        path, media_type=MEDIA_TYPES.get(suffix, "text/plain; charset=utf-8"),
        headers={"Cache-Control": "public, max-age=31536000, immutable"},
    )


async def datasets_page(request: Request) -> Response:
    settings = request.app.state.settings
    releases = await Release.all().order_by("-id")
    shown = [release_dict(r, latest=i == 0, base=settings.public_url)
             for i, r in enumerate(releases)]
    chart = None
    options: list[tuple[str, str]] = []
    species = request.query_params.get("species", "")
    phase = request.query_params.get("phenophase", "")
    if "|" in request.query_params.get("pair", ""):
        species, phase = request.query_params["pair"].split("|", 1)
    if releases:
        from exports import onset  # pyarrow: loaded on first use, not at start

        folder = settings.releases_dir / releases[0].path
        options = onset.choices(folder)
        if (not species or not phase) and options:
            species, phase = options[0]
        chart = onset_chart(onset.onset_by_year(folder, species, phase))
    base = settings.public_url or str(request.base_url).rstrip("/")
    return TEMPLATES.TemplateResponse(request, "datasets.html", {
        "releases": shown, "chart": chart, "options": options,
        "species": species, "phenophase": phase, "base": base,
    })


ROUTES = [
    Route("/datasets", datasets_page, methods=["GET"]),
    Route("/datasets/{version}/{path:path}", release_file, methods=["GET", "HEAD"]),
]

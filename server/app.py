"""The app factory: ``create_app(settings)`` builds the ASGI app.

Its lifespan opens the database and closes it; nothing uses the deprecated
startup/shutdown events.  ``uvicorn --factory server.app:create_app`` (as
``phenosync serve`` runs it) reads the settings from the environment.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from importlib.metadata import PackageNotFoundError, version

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server import datasets, jobs, photos, releases, uploads
from server.database import Database, DatabaseContextMiddleware
from server.endpoint import route
from server.errors import EXCEPTION_HANDLERS
from server.logs import configure_logging
from server.media import MediaServer
from server.metrics import metrics_endpoint
from server.middleware import (
    BodyLimitMiddleware,
    NulCharacterMiddleware,
    RateLimitMiddleware,
    RequestContextMiddleware,
    SecurityHeadersMiddleware,
)
from server.openapi import document
from server.review import pages as review_pages
from server.routes import ENDPOINTS
from server.settings import Settings
from server.sqlite_client import ServerLock
from server.storage import storage_for
from server.tokens import TokenCache


def package_version() -> str:
    try:
        return version("phenosync")
    except PackageNotFoundError:  # running from a source tree
        return "0.0.0+source"


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level, settings.log_json)
    database = Database(settings.database_url, pool_size=settings.database_pool_size)
    storage = storage_for(settings)
    runner = jobs.JobRunner(
        database,
        handlers={
            photos.JOB_KIND: partial(
                photos.process_upload, storage=storage, max_pixels=settings.max_image_pixels
            ),
            releases.JOB_KIND: partial(releases.publish_job, settings=settings, database=database),
        },
        workers=settings.job_workers,
        lease_ms=settings.job_lease_seconds * 1000,
        periodic=[
            (60.0, partial(uploads.sweep_expired, storage)),
            (300.0, partial(jobs.sweep_dead_jobs, database)),
        ],
    )
    tus = uploads.TusServer(settings, storage, notify=runner.notify)
    media = MediaServer(storage)
    openapi = document(
        ENDPOINTS, package_version(), extra_paths={**uploads.OPENAPI, **MediaServer.OPENAPI}
    )

    sqlite_path = database.sqlite_path
    server_lock = ServerLock(sqlite_path) if sqlite_path else None

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if server_lock is not None:
            server_lock.acquire()  # warns when another server process has the file
        await database.open()
        runner.start()
        # What start-up made (modules, models, schemas, the app) lives as long
        # as the process: frozen out of the cycle collector's sight, a full
        # collection (every few sync pushes of 500 records) does not walk it
        # again each time (13 ms a push on average, bench/sync_bench.py).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            await runner.stop()
            await database.close()
            if server_lock is not None:
                server_lock.release()

    async def health(request: Request) -> Response:
        try:
            await database.connection().execute_query("SELECT 1")
        except Exception as exc:  # any driver error means "not healthy"
            return JSONResponse(
                {
                    "error": {
                        "code": "service_unavailable",
                        "message": "The database does not answer.",
                        "details": {"database": type(exc).__name__},
                    }
                },
                status_code=503,
            )
        return JSONResponse({"status": "ok", "database": "ok", "version": package_version()})

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(openapi)

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        *(route(ep) for ep in ENDPOINTS),
        *tus.routes(),
        *media.routes(),
        *review_pages.routes(settings),
        *datasets.ROUTES,
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
        # Outermost first.
        middleware=[
            Middleware(RequestContextMiddleware),
            Middleware(SecurityHeadersMiddleware),
            Middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                       allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
                       allow_headers=["Authorization", "Content-Type", "X-Device-Id",
                                      "Tus-Resumable", "Upload-Length", "Upload-Offset",
                                      "Upload-Metadata", "Upload-Checksum"],
                       expose_headers=["Location", "Upload-Offset", "Upload-Length",
                                       "Tus-Resumable", "Retry-After", "X-Request-Id"]),
            Middleware(RateLimitMiddleware, per_minute=settings.rate_limit_per_minute),
            Middleware(NulCharacterMiddleware),
            Middleware(DatabaseContextMiddleware, database=database),
            Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes,
                       exempt_prefixes=("/api/v1/uploads/",)),
        ],
    )
    app.state.settings = settings
    app.state.database = database
    app.state.storage = storage
    app.state.jobs = runner
    app.state.token_cache = TokenCache(settings.token_cache_seconds)
    # Sync pushes of this process wait here, one at a time, before they take
    # a database connection: they serialise on the writer lock anyway
    # (server/models/sequence.py), and waiting inside a connection would
    # empty the pool for pulls and uploads.
    app.state.push_turn = asyncio.Lock()
    return app

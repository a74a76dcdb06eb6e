"""The app factory: ``create_app(settings)`` builds the ASGI app.

Its lifespan opens the database and closes it; nothing uses the deprecated
startup/shutdown events.  ``uvicorn --factory server.app:create_app`` (as
``phenosync serve`` runs it) reads the settings from the environment.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server import datasets
from server.database import Database, DatabaseContextMiddleware
from server.endpoint import route
from server.errors import EXCEPTION_HANDLERS
from server.middleware import BodyLimitMiddleware
from server.openapi import document
from server.routes import ENDPOINTS
from server.settings import Settings


def package_version() -> str:
    try:
        return version("phenosync")
    except PackageNotFoundError:  # running from a source tree
        return "0.0.0+source"


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    database = Database(settings.database_url)
    openapi = document(ENDPOINTS, package_version())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await database.open()
        try:
            yield
        finally:
            await database.close()

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
        *(route(ep) for ep in ENDPOINTS),
        *datasets.ROUTES,
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[
            Middleware(DatabaseContextMiddleware, database=database),
            Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes,
                       exempt_prefixes=("/api/v1/uploads/",)),
        ],
    )
    app.state.settings = settings
    app.state.database = database
    return app

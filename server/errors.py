"""One error shape for every 4xx and 5xx: ``{"error": {"code", "message", "details"}}``.

The domain errors and their codes live in ``schemas.errors``; this module maps
them, Starlette's own HTTP exceptions and any unexpected exception to that
shape, in one place.  ``tests/server/test_errors.py`` locks the shape.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from schemas import errors

log = logging.getLogger("phenosync.errors")

_BY_STATUS: dict[int, type[errors.PhenosyncError]] = {
    400: errors.BadRequest,
    401: errors.NotAuthenticated,
    403: errors.PermissionDenied,
    404: errors.NotFound,
    405: errors.MethodNotAllowed,
    409: errors.Conflict,
    413: errors.PayloadTooLarge,
    415: errors.UnsupportedMediaType,
    422: errors.ValidationFailed,
    429: errors.TooManyRequests,
    503: errors.ServiceUnavailable,
}


def error_response(error: errors.PhenosyncError) -> JSONResponse:
    headers = dict(error.headers)
    if error.status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="phenosync"')
    return JSONResponse(error.to_dict(), status_code=error.status, headers=headers)


async def handle_domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.PhenosyncError)
    return error_response(exc)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    cls = _BY_STATUS.get(exc.status_code, errors.PhenosyncError)
    error = cls(headers=dict(exc.headers or {}))
    if cls is errors.PhenosyncError:
        error.status = exc.status_code
        error.code = f"http_{exc.status_code}"
        error.message = str(exc.detail)
    return error_response(error)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(errors.PhenosyncError())


EXCEPTION_HANDLERS: dict[Any, Any] = {
    errors.PhenosyncError: handle_domain_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}

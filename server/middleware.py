"""Pure ASGI middleware (``BaseHTTPMiddleware`` would break contextvars)."""

from __future__ import annotations

import hashlib
import logging
import re
import time
import uuid
from urllib.parse import unquote_to_bytes

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemas import errors
from server.errors import error_response
from server.logs import request_id
from server.metrics import LATENCY, REQUESTS


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413, before they are buffered.

    A declared ``Content-Length`` over the limit is refused at once; a body
    streamed without one is counted as it arrives and cut off at the limit.
    Routes that stream large bodies to disk (photo uploads) are listed in
    ``exempt_prefixes`` and enforce their own limit.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, exempt_prefixes: tuple[str, ...] = ()
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt_prefixes = exempt_prefixes

    def _too_large(self) -> errors.PayloadTooLarge:
        return errors.PayloadTooLarge(
            f"The request body is larger than {self.max_bytes} bytes: send less at a time.",
            details={"max_bytes": self.max_bytes},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt_prefixes):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0:
                    response = error_response(
                        errors.BadRequest("The Content-Length header is not a number.")
                    )
                    await response(scope, receive, send)
                    return
                if declared > self.max_bytes:
                    await error_response(self._too_large())(scope, receive, send)
                    return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large()
            return message

        await self.app(scope, limited_receive, send)


class NulCharacterMiddleware:
    """Refuse a NUL character in the path, query or a header with 400.

    No text column of PostgreSQL holds U+0000 (it raises on any query that
    carries one), and no id, name or cursor has one: such a request is
    refused here, once, rather than reaching the database as a 500.  JSON
    bodies are checked where they are read (``server.endpoint.read_json``).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope["path"]
            or b"\x00" in unquote_to_bytes(scope.get("query_string", b""))
            or any(b"\x00" in value for _, value in scope["headers"])
        ):
            error = errors.BadRequest(
                "The request carries a NUL character (%00) in its path, query or headers.",
                code="nul_character",
            )
            await error_response(error)(scope, receive, send)
            return
        await self.app(scope, receive, send)


_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
access_log = logging.getLogger("phenosync.access")


class RequestContextMiddleware:
    """Give every request an id (``X-Request-Id``, kept when a proxy sent a sane
    one), log one access line with it, and count it in the metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = Headers(scope=scope).get("x-request-id", "")
        rid = incoming if _REQUEST_ID_OK.match(incoming) else uuid.uuid4().hex
        token = request_id.set(rid)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("X-Request-Id", rid)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            REQUESTS.labels(scope["method"], route, str(status)).inc()
            LATENCY.labels(scope["method"], route).observe(elapsed)
            access_log.info(
                "%s %s %s", scope["method"], scope["path"], status,
                extra={"fields": {"method": scope["method"], "path": scope["path"],
                                  "route": route, "status": status,
                                  "duration_ms": round(elapsed * 1000, 2)}},
            )
            request_id.reset(token)


SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Content-Security-Policy",
     "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
     "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
)


class SecurityHeadersMiddleware:
    """Headers every response carries (pages are served locally: no CDN)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS:
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RateLimitMiddleware:
    """Per-token (or per-address) fixed-window limit under ``/api/``, per process.

    It protects a process from one runaway client; the limit a client sees
    with N processes behind a balancer is up to N times this one.
    """

    WINDOW = 60.0

    def __init__(self, app: ASGIApp, per_minute: int) -> None:
        self.app = app
        self.per_minute = per_minute
        self.windows: dict[str, tuple[float, int]] = {}

    def _key(self, scope: Scope) -> str:
        auth = Headers(scope=scope).get("authorization")
        if auth:
            return "t:" + hashlib.sha256(auth.encode()).hexdigest()[:32]
        client = scope.get("client")
        return "a:" + (client[0] if client else "unknown")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        now = time.monotonic()
        key = self._key(scope)
        start, count = self.windows.get(key, (now, 0))
        if now - start >= self.WINDOW:
            start, count = now, 0
        if count >= self.per_minute:
            retry = max(1, int(self.WINDOW - (now - start)) + 1)
            error = errors.TooManyRequests(
                f"More than {self.per_minute} requests a minute: wait {retry} s.",
                headers={"Retry-After": str(retry)},
                details={"retry_after_s": retry},
            )
            await error_response(error)(scope, receive, send)
            return
        self.windows[key] = (start, count + 1)
        if len(self.windows) > 100_000:  # forget idle clients
            self.windows = {k: v for k, v in self.windows.items() if now - v[0] < self.WINDOW}
        await self.app(scope, receive, send)

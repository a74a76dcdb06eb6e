"""Pure ASGI middleware (``BaseHTTPMiddleware`` would break contextvars)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemas import errors
from server.errors import error_response


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

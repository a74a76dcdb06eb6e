"""Fault injection for sync tests: a network that loses, repeats and reorders.

:class:`FaultyTransport` wraps the real ASGI transport of the real app: the
server and the database are real, only the wire between the device and the
server misbehaves.  Faults are planned per request path and consumed in order:

- ``LOSE_REQUEST``: the request never reaches the server; the client sees a
  connection error.
- ``LOSE_RESPONSE``: the server handles the request (and commits), then the
  client sees a read error.
- ``DUPLICATE``: the request is delivered twice (a proxy retrying); the
  client sees the second response.
- ``HOLD``: the request is held back and the client sees a timeout; the test
  delivers it later with :meth:`FaultyTransport.release` (a reordered,
  delayed delivery: an older push arriving after a newer one).
- ``GATEWAY_ERROR``: a 503 from a proxy in front of the server; not delivered.

``before(path, coroutine_factory)`` runs something (another device's sync, a
reviewer's change) just before the next matching request is delivered: the
deterministic way to interleave two devices.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx


class Fault(enum.Enum):
    LOSE_REQUEST = "lose_request"
    LOSE_RESPONSE = "lose_response"
    DUPLICATE = "duplicate"
    HOLD = "hold"
    GATEWAY_ERROR = "gateway_error"


@dataclass
class _Plan:
    path: str
    fault: Fault | None = None
    before: Callable[[], Awaitable[Any]] | None = None


@dataclass
class FaultyTransport(httpx.AsyncBaseTransport):
    inner: httpx.AsyncBaseTransport
    plans: list[_Plan] = field(default_factory=list)
    held: list[httpx.Request] = field(default_factory=list)
    delivered: int = 0  # requests that reached the server
    log: list[tuple[str, str]] = field(default_factory=list)  # (path, what happened)

    def inject(self, fault: Fault | None, on: str = "", times: int = 1) -> None:
        """The next ``times`` requests whose path contains ``on`` meet ``fault``
        (``None``: pass through, to let some requests by before a fault)."""
        self.plans.extend(_Plan(on, fault) for _ in range(times))

    def before(self, on: str, action: Callable[[], Awaitable[Any]]) -> None:
        self.plans.append(_Plan(on, before=action))

    async def release(self, order: Sequence[int] | None = None) -> list[httpx.Response]:
        """Deliver the held requests now, oldest first or in ``order`` (a
        permutation of their indexes); their responses go nowhere.  The
        responses come back in delivery order."""
        held, self.held = self.held, []
        order = range(len(held)) if order is None else order
        assert sorted(order) == list(range(len(held))), "order must be a permutation"
        responses = []
        for n in order:
            responses.append(await self._deliver(held[n]))
        return responses

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        plan = next((p for p in self.plans if p.path in request.url.path), None)
        if plan is not None:
            self.plans.remove(plan)
        fault = plan.fault if plan else None
        self.log.append((request.url.path, fault.value if fault else "ok"))
        if plan is not None and plan.before is not None:
            await plan.before()
        if fault is Fault.LOSE_REQUEST:
            raise httpx.ConnectError("fault: request lost", request=request)
        if fault is Fault.GATEWAY_ERROR:
            return httpx.Response(503, json={"error": {"code": "unavailable",
                                                       "message": "proxy", "details": None}})
        if fault is Fault.HOLD:
            self.held.append(_copy(request))
            raise httpx.ReadTimeout("fault: held back", request=request)
        response = await self._deliver(request)
        if fault is Fault.LOSE_RESPONSE:
            raise httpx.ReadError("fault: response lost", request=request)
        if fault is Fault.DUPLICATE:
            response = await self._deliver(request)
        return response

    async def _deliver(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(_copy(request))
        body = await response.aread()
        await response.aclose()
        self.delivered += 1
        return httpx.Response(response.status_code, headers=response.headers, content=body,
                              request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _copy(request: httpx.Request) -> httpx.Request:
    return httpx.Request(request.method, request.url, headers=request.headers,
                         content=request.content)

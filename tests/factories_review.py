"""Factories for review tests: observations pushed the way devices push them,
reviewers and experts, and a claim-and-decide helper over the API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from server.models.accounts import User
from server.models.observations import Observation
from tests.factories import auth, make_user
from tests.factories_sync import Device, World, make_device, observation


@dataclass
class Reviewer:
    client: httpx.AsyncClient
    user: User
    token: str

    async def claim(self, **body: Any) -> httpx.Response:
        return await self.client.post("/api/v1/review/claims", json=body,
                                      headers=auth(self.token))

    async def decide(self, observation_id: str, decision: str = "verify",
                     **extra: Any) -> httpx.Response:
        return await self.client.post(
            "/api/v1/review/decisions", headers=auth(self.token),
            json={"observation_id": observation_id, "decision": decision, **extra},
        )

    async def claim_and_decide(self, observation_id: str, decision: str = "verify",
                               **extra: Any) -> httpx.Response:
        r = await self.claim(limit=50)
        assert r.status_code == 200, r.text
        assert observation_id in [i["id"] for i in r.json()["items"]], r.json()
        return await self.decide(observation_id, decision, **extra)


async def make_reviewer(client: httpx.AsyncClient, world: World,
                        role: str = "reviewer") -> Reviewer:
    user, token = await make_user(role, project=world.project)
    return Reviewer(client, user, token)


async def push_observations(device: Device, *records: dict[str, Any]) -> list[Observation]:
    r = await device.push({"observations": {"created": list(records)}})
    assert r.json()["counts"]["applied"] == len(records), r.text
    return [await Observation.get(id=rec["id"]) for rec in records]


async def flagged(client: httpx.AsyncClient, world: World, count: int = 1,
                  device: Device | None = None) -> tuple[Device, list[Observation]]:
    """Observations that need review: outside the project area (a flag)."""
    device = device or await make_device(client, world)
    records = [observation(world, latitude=48.85, longitude=2.35) for _ in range(count)]
    return device, await push_observations(device, *records)

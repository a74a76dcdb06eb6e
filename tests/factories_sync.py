"""Factories for sync tests: wire records and a device that talks over HTTP."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from server.models.reference import Phenophase, Project, Taxon
from server.vocabulary import load_vocabulary
from tests.factories import auth, make_project, make_user


@dataclass
class World:
    project: Project
    hazel: Taxon
    oak: Taxon
    swallow: Taxon
    open_flowers: Phenophase
    leaves: Phenophase
    singing: Phenophase


async def make_world() -> World:
    await load_vocabulary()
    project = await make_project(slug="natuurkalender")
    return World(
        project=project,
        hazel=await Taxon.get(scientific_name="Corylus avellana"),
        oak=await Taxon.get(scientific_name="Quercus robur"),
        swallow=await Taxon.get(scientific_name="Hirundo rustica"),
        open_flowers=await Phenophase.get(code="open_flowers"),
        leaves=await Phenophase.get(code="leaves"),
        singing=await Phenophase.get(code="singing_individuals"),
    )


def observation(world: World, **overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "project_id": str(world.project.id),
        "taxon_id": str(world.hazel.id),
        "phenophase_id": str(world.open_flowers.id),
        "status": "yes",
        "intensity": "5_24",
        "observed_at": "2026-02-14T10:30:00+01:00",
        "latitude": 51.9634,
        "longitude": 5.6812,
        "coordinate_uncertainty_m": 10,
        "geoprivacy": "open",
        "notes": "",
        "license": "CC-BY-4.0",
    }
    record.update(overrides)
    return record


@dataclass
class Device:
    """One installation of the app: its token, its id and its cursor."""

    client: httpx.AsyncClient
    token: str
    device_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    cursor: int | None = None

    def another_device(self) -> Device:
        """A second installation of the same user (same token, own id and cursor)."""
        return Device(self.client, self.token)

    async def push(self, changes: dict[str, Any], *, cursor: Any = "own",
                   push_count: int | None = None) -> httpx.Response:
        last = self.cursor if cursor == "own" else cursor
        params = {} if last is None else {"last_pulled_at": str(last)}
        if push_count is not None:
            params["push_count"] = str(push_count)
        return await self.client.post(
            "/api/v1/sync/push", params=params, json={"changes": changes},
            headers={**auth(self.token), "X-Device-Id": self.device_id},
        )

    async def pull(self, *, limit: int = 500, **params: Any) -> dict[str, Any]:
        query = {"limit": str(limit), "schema_version": "1", **params}
        if self.cursor is not None:
            query["last_pulled_at"] = str(self.cursor)
        r = await self.client.get("/api/v1/sync/pull", params=query, headers=auth(self.token))
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        self.cursor = body["timestamp"]
        return body

    async def pull_all(self, limit: int = 500) -> dict[str, dict[str, list[Any]]]:
        merged: dict[str, dict[str, list[Any]]] = {}
        while True:
            body = await self.pull(limit=limit)
            for table, section in body["changes"].items():
                bucket = merged.setdefault(table, {"created": [], "updated": [], "deleted": []})
                for kind, items in section.items():
                    bucket[kind].extend(items)
            if not body["has_more"]:
                return merged


async def make_device(client: httpx.AsyncClient, world: World | None = None,
                      role: str = "volunteer") -> Device:
    _, token = await make_user(role, project=world.project if world else None)
    return Device(client, token)


def created(changes: dict[str, Any], table: str = "observations") -> list[dict[str, Any]]:
    return list(changes[table]["created"])

"""Factories for taxa, phenophases, observations, photos and quality flags."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from typing import Any

from server.models.accounts import User
from server.models.observations import Observation, Photo, QualityFlag
from server.models.reference import Phenophase, Project, Taxon

_counter = itertools.count(1)


async def make_taxon(**overrides: Any) -> Taxon:
    n = next(_counter)
    values: dict[str, Any] = {
        "scientific_name": f"Testus species{n}", "rank": "species", "group": "tree",
        "vernacular_en": f"Test tree {n}",
    }
    values.update(overrides)
    return await Taxon.create(**values)


async def make_phenophase(**overrides: Any) -> Phenophase:
    n = next(_counter)
    values: dict[str, Any] = {
        "code": f"phase_{n}", "name": f"Phase {n}", "definition": f"Look for thing {n}.",
        "ppo_iri": f"http://purl.obolibrary.org/obo/PPO_{n:07d}", "groups": ["tree"],
    }
    values.update(overrides)
    return await Phenophase.create(**values)


async def make_observation(
    user: User, project: Project, taxon: Taxon, phenophase: Phenophase, **overrides: Any
) -> Observation:
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()), "user": user, "project": project, "taxon": taxon,
        "phenophase": phenophase, "status": "yes",
        "observed_at": datetime(2024, 3, 14, 9, 30, tzinfo=UTC), "observed_utc_offset_min": 60,
        "latitude": 52.0907374, "longitude": 5.1214201, "coordinate_uncertainty_m": 12.0,
        "review_status": "auto_accepted",
    }
    values.update(overrides)
    return await Observation.create(**values)


async def make_photo(observation: Observation, **overrides: Any) -> Photo:
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()), "observation": observation, "user_id": observation.user_id,  # type: ignore[attr-defined]
        "upload_state": "ready", "license": "CC-BY-4.0", "sha256": "0" * 64,
    }
    values.update(overrides)
    return await Photo.create(**values)


async def make_flag(observation: Observation, code: str) -> QualityFlag:
    flag = await QualityFlag.create(observation=observation, code=code, message=f"{code}!")
    observation.flag_count += 1
    await observation.save(update_fields=["flag_count"])
    return flag

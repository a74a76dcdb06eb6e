"""Read-only reference data: taxa and phenophases."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response

from server.endpoint import Access, Call, Endpoint
from server.models.reference import Phenophase, Taxon


def taxon_dict(t: Taxon) -> dict[str, Any]:
    return {
        "id": t.id,
        "scientific_name": t.scientific_name,
        "rank": t.rank,
        "vernacular_nl": t.vernacular_nl,
        "vernacular_en": t.vernacular_en,
        "group": t.group,
        "sensitive": t.sensitive,
    }


def phenophase_dict(p: Phenophase) -> dict[str, Any]:
    return {
        "id": p.id,
        "code": p.code,
        "name": p.name,
        "definition": p.definition,
        "ppo_iri": p.ppo_iri,
        "groups": p.groups,
        "intensity": p.intensity,
    }


async def list_taxa(call: Call) -> Response:
    taxa = await Taxon.filter(is_deleted=False).order_by("scientific_name")
    return JSONResponse({"taxa": [taxon_dict(t) for t in taxa]})


async def list_phenophases(call: Call) -> Response:
    phases = await Phenophase.filter(is_deleted=False).order_by("code")
    return JSONResponse({"phenophases": [phenophase_dict(p) for p in phases]})


ENDPOINTS = [
    Endpoint("GET", "/api/v1/taxa", list_taxa, "The taxa (species list)", Access.PUBLIC,
             tags=("vocabulary",)),
    Endpoint("GET", "/api/v1/phenophases", list_phenophases,
             "Phenophases with definitions, PPO IRIs and intensity classes", Access.PUBLIC,
             tags=("vocabulary",)),
]

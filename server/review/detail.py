"""What a reviewer sees of a record: the observation, its photos, its flags
explained, the decisions so far, and the observer's recent records of the
same taxon (context: is this observer reliable, is this plant known)."""

from __future__ import annotations

from typing import Any

from schemas import errors
from server.models.accounts import User
from server.models.observations import Observation, Photo, QualityFlag
from server.models.review import ReviewDecision, ReviewQueueItem
from server.quality import describe
from server.review import access
from sync.records import format_observed_at

RECENT = 10


def photo_url(photo_id: str) -> str:
    """The 1024-pixel derivative (served by photo processing)."""
    return f"/api/v1/photos/{photo_id}/derivatives/1024"


def summary(o: Observation) -> dict[str, Any]:
    return {
        "id": o.id,
        "taxon": {"id": o.taxon.id, "scientific_name": o.taxon.scientific_name,
                  "vernacular_en": o.taxon.vernacular_en, "vernacular_nl": o.taxon.vernacular_nl},
        "phenophase": {"id": o.phenophase.id, "code": o.phenophase.code,
                       "name": o.phenophase.name},
        "status": str(o.status),
        "observed_at": format_observed_at(o.observed_at, o.observed_utc_offset_min),
        "review_status": str(o.review_status),
        "flag_count": o.flag_count,
    }


async def summaries(ids: list[str]) -> list[dict[str, Any]]:
    """Queue rows in the order given."""
    rows = {o.id: o for o in await Observation.filter(id__in=ids).select_related(
        "taxon", "phenophase", "project", "user")}
    flags: dict[str, list[str]] = {}
    for oid, code in await QualityFlag.filter(observation_id__in=ids).values_list(
        "observation_id", "code"
    ):
        flags.setdefault(oid, []).append(code)
    return [
        {**summary(rows[i]), "project": rows[i].project.slug,
         "observer": rows[i].user.username, "flags": sorted(flags.get(i, []))}
        for i in ids if i in rows
    ]


async def observation_detail(user: User, observation_id: str) -> dict[str, Any]:
    obs = await Observation.get_or_none(id=observation_id, is_deleted=False).select_related(
        "project", "taxon", "phenophase", "user"
    )
    if obs is None:
        raise errors.NotFound(f"There is no observation {observation_id}.")
    role = await access.project_role(user, obs.project_id)  # type: ignore[attr-defined]
    if not access.may_review(role):
        raise errors.PermissionDenied(f"You are not a reviewer in project {obs.project.slug!r}.")
    flags = await QualityFlag.filter(observation_id=obs.id).order_by("code")
    photos = await Photo.filter(observation_id=obs.id, is_deleted=False).order_by("created_seq")
    decisions = await ReviewDecision.filter(observation_id=obs.id).select_related(
        "reviewer").order_by("id")
    recent = await Observation.filter(
        user_id=obs.user_id, taxon_id=obs.taxon_id, is_deleted=False  # type: ignore[attr-defined]
    ).exclude(id=obs.id).select_related("taxon", "phenophase").order_by(
        "-observed_at").limit(RECENT)
    item = await ReviewQueueItem.get_or_none(observation_id=obs.id)
    return {
        **summary(obs),
        "project": {"id": obs.project.id, "slug": obs.project.slug, "name": obs.project.name,
                    "agreements_required": obs.project.agreements_required},
        "phenophase": {"id": obs.phenophase.id, "code": obs.phenophase.code,
                       "name": obs.phenophase.name, "definition": obs.phenophase.definition},
        "intensity": obs.intensity,
        "latitude": obs.latitude,
        "longitude": obs.longitude,
        "coordinate_uncertainty_m": obs.coordinate_uncertainty_m,
        "geoprivacy": str(obs.geoprivacy),
        "notes": obs.notes,
        "observer": {"id": obs.user.id, "username": obs.user.username,
                     "display_name": obs.user.display_name},
        "own_record": obs.user.id == user.id,
        "verified_taxon_id": obs.verified_taxon_id,  # type: ignore[attr-defined]
        "verified_phenophase_id": obs.verified_phenophase_id,  # type: ignore[attr-defined]
        "flags": [
            {"code": f.code, "title": describe(f.code).title, "message": f.message,
             "explanation": describe(f.code).explanation, "details": f.details}
            for f in flags
        ],
        "photos": [
            {"id": p.id, "url": photo_url(p.id), "upload_state": str(p.upload_state),
             "width": p.width, "height": p.height}
            for p in photos
        ],
        "decisions": [
            {"reviewer": d.reviewer.username, "decision": str(d.decision),
             "is_expert": d.is_expert, "round": d.round, "comment": d.comment,
             "corrected_taxon_id": d.corrected_taxon_id,  # type: ignore[attr-defined]
             "corrected_phenophase_id": d.corrected_phenophase_id,  # type: ignore[attr-defined]
             "created_at": d.created_at.isoformat()}
            for d in decisions
        ],
        "queue": None if item is None else {
            "round": item.round, "expert_only": item.expert_only,
            "claimed_by_me": item.claimed_by_id == user.id,
            "lease_expires_ms": item.lease_expires_ms if item.claimed_by_id else None,
        },
        "observer_recent": [summary(o) for o in recent],
    }

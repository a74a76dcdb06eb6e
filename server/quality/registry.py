"""The registry: every check, in the order they run, and their explanations."""

from __future__ import annotations

from server.quality import (
    coarse_location,
    conflicting_status,
    future_date,
    implausible_date,
    phenophase_taxon,
    photos,
    project_area,
    season,
)
from server.quality.check import Check

CHECKS: tuple[Check, ...] = (
    future_date.CHECK,
    implausible_date.CHECK,
    project_area.CHECK,
    coarse_location.CHECK,
    phenophase_taxon.CHECK,
    season.CHECK,
    conflicting_status.CHECK,
)
PHOTO_CHECKS: tuple[Check, ...] = (photos.EXIF_TIME, photos.EXIF_LOCATION, photos.DUPLICATE)
#: Codes ``run_checks`` owns: it adds and removes these and no others.
OWN_CODES = frozenset(c.code for c in CHECKS)
_BY_CODE = {c.code: c for c in (*CHECKS, *PHOTO_CHECKS)}


def describe(code: str) -> Check:
    """The check behind a flag code; an unknown code gets a generic description."""
    return _BY_CODE.get(code) or Check(code, code.replace("_", " ").capitalize(),
                                       "A quality flag without a registered explanation.")


def explanations() -> list[dict[str, str]]:
    return [
        {"code": c.code, "title": c.title, "explanation": c.explanation,
         "written_by": "photo processing" if c.run is None else "quality checks"}
        for c in (*CHECKS, *PHOTO_CHECKS)
    ]

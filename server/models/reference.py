"""Reference data: projects, taxa and phenophases.

These rows sync to devices (read-only there), so they carry sequence numbers
like observations do.
"""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.models import Model


class Synced:
    """Columns every synced table has: the sequence of its first and last write
    and a tombstone, kept for the retention period so devices learn of deletes."""

    created_seq = fields.BigIntField(default=0)
    updated_seq = fields.BigIntField(default=0, db_index=True)
    is_deleted = fields.BooleanField(default=False)
    deleted_at = fields.DatetimeField(null=True)


class Taxon(Synced, Model):
    id = fields.IntField(primary_key=True)
    scientific_name = fields.CharField(max_length=200, unique=True)
    rank = fields.CharField(max_length=32, default="species")
    vernacular_nl = fields.CharField(max_length=200, default="")
    vernacular_en = fields.CharField(max_length=200, default="")
    # tree, shrub, herb, bird, insect, amphibian: phenophases apply per group.
    group = fields.CharField(max_length=32)
    # Sensitive taxa are published generalised, whatever the observer chose.
    sensitive = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "taxa"


class Phenophase(Synced, Model):
    id = fields.IntField(primary_key=True)
    code = fields.CharField(max_length=64, unique=True)
    name = fields.CharField(max_length=200)
    definition = fields.TextField(default="")
    ppo_iri = fields.CharField(max_length=255, null=True)
    # Taxon groups this phenophase applies to.
    groups: fields.Field[list[str]] = fields.JSONField(default=list)
    # {"kind": "percent"|"count", "question": ..., "classes": [{"code","label"}]} or null.
    intensity: fields.Field[dict[str, Any] | None] = fields.JSONField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "phenophases"

    def applies_to(self, taxon: Taxon) -> bool:
        return taxon.group in (self.groups or [])

    def intensity_codes(self) -> list[str]:
        if not self.intensity:
            return []
        return [c["code"] for c in self.intensity.get("classes", [])]


class Project(Synced, Model):
    id = fields.IntField(primary_key=True)
    slug = fields.CharField(max_length=64, unique=True)
    name = fields.CharField(max_length=200)
    description = fields.TextField(default="")
    license = fields.CharField(max_length=32, default="CC-BY-4.0")
    # Area as a bounding box (degrees, WGS84), which ``area_geojson`` may refine
    # with a polygon.  Null means "anywhere".
    min_latitude = fields.FloatField(null=True)
    min_longitude = fields.FloatField(null=True)
    max_latitude = fields.FloatField(null=True)
    max_longitude = fields.FloatField(null=True)
    area_geojson: fields.Field[dict[str, Any] | None] = fields.JSONField(null=True)
    # Review policy.
    agreements_required = fields.SmallIntField(default=2)
    auto_accept = fields.BooleanField(default=True)
    max_uncertainty_m = fields.IntField(default=1000)
    # Whether free-text notes are published in open-data releases.
    publish_notes = fields.BooleanField(default=False)
    # Whether any registered volunteer may join and record.
    is_open = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "projects"

    def contains(self, latitude: float, longitude: float) -> bool:
        """True when the point lies in the project's bounding box (or no box is set)."""
        box = (self.min_latitude, self.min_longitude, self.max_latitude, self.max_longitude)
        if any(v is None for v in box):
            return True
        return bool(
            self.min_latitude <= latitude <= self.max_latitude  # type: ignore[operator]
            and self.min_longitude <= longitude <= self.max_longitude  # type: ignore[operator]
        )


class ProjectTaxon(Model):
    """A taxon on a project's species list (what its volunteers record)."""

    id = fields.IntField(primary_key=True)
    project: fields.ForeignKeyRelation[Project] = fields.ForeignKeyField(
        "models.Project", related_name="species", on_delete=fields.CASCADE
    )
    taxon: fields.ForeignKeyRelation[Taxon] = fields.ForeignKeyField(
        "models.Taxon", related_name="project_links", on_delete=fields.CASCADE
    )

    class Meta:
        table = "project_taxa"
        unique_together = (("project", "taxon"),)

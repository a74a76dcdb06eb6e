"""Open-data releases: one row per published, immutable release (issue #6).

The files live under ``settings.releases_dir / version``; this row says what
is there, so the datasets list needs no directory scans.
"""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.models import Model


class Release(Model):
    id = fields.IntField(primary_key=True)
    version = fields.CharField(max_length=32, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    # Folder name under the releases dir (the version).
    path = fields.CharField(max_length=255)
    schema_version = fields.CharField(max_length=32)
    observation_count = fields.BigIntField(default=0)
    media_count = fields.BigIntField(default=0)
    retracted_count = fields.BigIntField(default=0)
    years: fields.Field[list[int]] = fields.JSONField(default=list)
    # [{"path", "bytes", "sha256"}] for every file but SHA256SUMS.
    files: fields.Field[list[dict[str, Any]]] = fields.JSONField(default=list)
    # SHA-256 of the SHA256SUMS file: one hash that pins the whole release.
    sha256 = fields.CharField(max_length=64)
    citation = fields.TextField(default="")
    created_by: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.User", related_name="releases", null=True, on_delete=fields.SET_NULL
    )

    class Meta:
        table = "releases"

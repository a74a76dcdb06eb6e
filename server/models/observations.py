"""Observations, their photos and their quality flags.

An observation is one status report (DESIGN.md, "The observation").  Its
primary key is the id the client generated, so that a retried create can
never make a second row.
"""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.models import Model

from schemas.observation import DEFAULT_LICENSE, Geoprivacy, ReviewStatus, Status, UploadState
from server.models.reference import Synced


class Observation(Synced, Model):
    id = fields.CharField(max_length=36, primary_key=True)
    user: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.User", related_name="observations", on_delete=fields.RESTRICT
    )
    # --- client-owned ---------------------------------------------------
    project: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Project", related_name="observations", on_delete=fields.RESTRICT
    )
    taxon: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Taxon", related_name="observations", on_delete=fields.RESTRICT
    )
    phenophase: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Phenophase", related_name="observations", on_delete=fields.RESTRICT
    )
    status = fields.CharEnumField(Status, max_length=8)
    intensity = fields.CharField(max_length=32, null=True)
    # Stored in UTC, with the offset the observer's clock showed kept beside it
    # so that the local time of day can be given back exactly.
    observed_at = fields.DatetimeField()
    observed_utc_offset_min = fields.SmallIntField(default=0)
    latitude = fields.FloatField()
    longitude = fields.FloatField()
    coordinate_uncertainty_m = fields.FloatField(null=True)
    geoprivacy = fields.CharEnumField(Geoprivacy, max_length=8, default=Geoprivacy.OPEN)
    notes = fields.TextField(default="")
    license = fields.CharField(max_length=32, default=DEFAULT_LICENSE)
    # --- server-owned ---------------------------------------------------
    review_status = fields.CharEnumField(
        ReviewStatus, max_length=16, default=ReviewStatus.PENDING
    )
    verified_taxon: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.Taxon", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    verified_phenophase: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.Phenophase", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    # Number of open quality flags, kept so the review queue can put flagged
    # records first without a join.
    flag_count = fields.SmallIntField(default=0)
    server_created_at = fields.DatetimeField(auto_now_add=True)
    server_updated_at = fields.DatetimeField(auto_now=True)
    # --- sync bookkeeping ------------------------------------------------
    # Incremented by every accepted change of a client-owned field.
    client_revision = fields.IntField(default=0)
    # Sequence number of the last change of a client-owned field, and the
    # device that made it: a conflict is a change by *another* device after
    # the pushing client's last pull.  Reviewer changes do not move these.
    client_changed_seq = fields.BigIntField(default=0)
    client_changed_device = fields.CharField(max_length=64, null=True)
    # The push that wrote the client-owned fields: its last_pulled_at and the
    # device's optional push_count (null: before migration 0008 or not sent).
    # An older push of the same device is superseded (docs/sync-protocol.md).
    client_changed_pulled_at = fields.BigIntField(null=True)
    client_changed_push = fields.BigIntField(null=True)
    # Device clocks, kept as data, never used for ordering.
    client_created_at = fields.DatetimeField(null=True)
    client_updated_at = fields.DatetimeField(null=True)

    class Meta:
        table = "observations"
        indexes = (
            ("user_id", "updated_seq"),
            ("project_id", "review_status", "flag_count"),
            ("taxon_id", "phenophase_id", "observed_at"),
            # Releases read observations in time order, page by page.
            ("observed_at", "id"),
            # The conflicting_status check's index (one observer's records of a
            # taxon, phenophase and status on one local day, by latitude) is on
            # an expression, the local day: migration 0010 makes it, with SQL.
            # The out_of_season sample: the newest verified "yes" records of a
            # taxon and phenophase, without walking the others.
            ("review_status", "taxon_id", "phenophase_id", "status", "observed_at"),
        )


class Photo(Synced, Model):
    """A photo record syncs like any record, but its upload state is server-owned."""

    id = fields.CharField(max_length=36, primary_key=True)
    observation: fields.ForeignKeyRelation[Observation] = fields.ForeignKeyField(
        "models.Observation", related_name="photos", on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.User", related_name="photos", on_delete=fields.RESTRICT
    )
    # What the client says the content hash is (checked on completion).
    declared_sha256 = fields.CharField(max_length=64, null=True)
    license = fields.CharField(max_length=32, default=DEFAULT_LICENSE)
    # The device that pushed the record last: its own pushes pull back as "updated".
    client_changed_device = fields.CharField(max_length=64, null=True)
    # --- server-owned ---------------------------------------------------
    upload_state = fields.CharEnumField(UploadState, max_length=16, default=UploadState.PENDING)
    sha256 = fields.CharField(max_length=64, null=True, db_index=True)
    perceptual_hash = fields.CharField(max_length=32, null=True, db_index=True)
    storage_key = fields.CharField(max_length=255, null=True)
    content_type = fields.CharField(max_length=64, null=True)
    size_bytes = fields.BigIntField(null=True)
    width = fields.IntField(null=True)
    height = fields.IntField(null=True)
    exif: fields.Field[dict[str, Any] | None] = fields.JSONField(null=True)
    # EXIF summary the quality checks use (the rest is in ``exif``).
    exif_taken_at = fields.DatetimeField(null=True)
    exif_latitude = fields.FloatField(null=True)
    exif_longitude = fields.FloatField(null=True)
    # Long edges of the derivatives made, e.g. [320, 1024, 2048].
    derivative_sizes: fields.Field[list[int] | None] = fields.JSONField(null=True)
    # The 64-bit perceptual hash in four 16-bit bands: two hashes within 3 bits
    # share at least one band, so near-duplicates are found by index lookups.
    phash_band0 = fields.IntField(null=True, db_index=True)
    phash_band1 = fields.IntField(null=True, db_index=True)
    phash_band2 = fields.IntField(null=True, db_index=True)
    phash_band3 = fields.IntField(null=True, db_index=True)
    # Why the last upload was refused (a stable code), when upload_state is failed.
    failure_code = fields.CharField(max_length=48, null=True)
    server_created_at = fields.DatetimeField(auto_now_add=True)
    server_updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "photos"
        indexes = (("user_id", "updated_seq"),)


class QualityFlag(Model):
    """A reason to doubt an observation, with a stable code and a human message."""

    id = fields.IntField(primary_key=True)
    observation: fields.ForeignKeyRelation[Observation] = fields.ForeignKeyField(
        "models.Observation", related_name="flags", on_delete=fields.CASCADE
    )
    code = fields.CharField(max_length=48)
    message = fields.TextField()
    details: fields.Field[dict[str, Any] | None] = fields.JSONField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "quality_flags"
        unique_together = (("observation", "code"),)
        indexes = (("code",),)

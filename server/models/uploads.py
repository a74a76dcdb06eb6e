"""Resumable (tus 1.0) uploads of photo files.

An upload belongs to one photo record and one user.  Its bytes live in storage
under ``uploads/<id>``; ``offset`` is what the server has stored *and
recorded*, so after a restart the client resumes from it.  ``locked_until``
is a lease (epoch milliseconds) that lets one request at a time write.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.models import Model


class UploadStatus(StrEnum):
    RECEIVING = "receiving"
    COMPLETE = "complete"  # every byte is in; processing is queued
    PROCESSED = "processed"  # the photo is ready; the bytes moved to originals/
    FAILED = "failed"
    TERMINATED = "terminated"
    EXPIRED = "expired"


class Upload(Model):
    id = fields.CharField(max_length=32, primary_key=True)
    photo: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Photo", related_name="uploads", on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.User", related_name="uploads", on_delete=fields.CASCADE
    )
    length = fields.BigIntField()
    offset = fields.BigIntField(default=0)
    # The Upload-Metadata header as sent (echoed by HEAD) and its decoded pairs.
    metadata_header = fields.TextField(default="")
    metadata: fields.Field[dict[str, Any]] = fields.JSONField(default=dict)
    declared_sha256 = fields.CharField(max_length=64, null=True)
    content_type = fields.CharField(max_length=64, null=True)
    state = fields.CharEnumField(UploadStatus, max_length=16, default=UploadStatus.RECEIVING)
    storage_key = fields.CharField(max_length=255)
    expires_at = fields.DatetimeField()
    # Write lease: epoch ms until which ``lock_token``'s request may write.
    locked_until = fields.BigIntField(default=0)
    lock_token = fields.CharField(max_length=32, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "uploads"
        indexes = (("state", "expires_at"),)

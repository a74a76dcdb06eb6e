"""Vocabulary of an observation: what the volunteer states, what the server decides.

Field ownership is the core of the sync rules (DESIGN.md): a push may set the
client-owned fields only; the server ignores server-owned ones.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """Did the observer see the phenophase? ``no`` matters as much as ``yes``."""

    YES = "yes"
    NO = "no"
    UNKNOWN = "unknown"


class Geoprivacy(StrEnum):
    OPEN = "open"
    OBSCURED = "obscured"
    PRIVATE = "private"


class ReviewStatus(StrEnum):
    PENDING = "pending"
    AUTO_ACCEPTED = "auto_accepted"
    NEEDS_REVIEW = "needs_review"
    NEEDS_INFO = "needs_info"
    VERIFIED = "verified"
    REJECTED = "rejected"


class Decision(StrEnum):
    VERIFY = "verify"
    REJECT = "reject"
    NEEDS_INFO = "needs_info"


class UploadState(StrEnum):
    PENDING = "pending"
    UPLOADING = "uploading"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"


CLIENT_OWNED_FIELDS = (
    "project_id",
    "taxon_id",
    "phenophase_id",
    "status",
    "intensity",
    "observed_at",
    "latitude",
    "longitude",
    "coordinate_uncertainty_m",
    "geoprivacy",
    "notes",
    "license",
)

SERVER_OWNED_FIELDS = (
    "review_status",
    "quality_flags",
    "verified_taxon_id",
    "verified_phenophase_id",
    "server_created_at",
    "server_updated_at",
)

#: Licenses a volunteer may choose for an observation or photo (SPDX ids).
LICENSES = ("CC0-1.0", "CC-BY-4.0", "CC-BY-NC-4.0", "CC-BY-SA-4.0", "all-rights-reserved")
DEFAULT_LICENSE = "CC-BY-4.0"

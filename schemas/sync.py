"""The sync protocol's contract: tables, columns per schema version, id rules,
rejection codes.  See ``docs/sync-protocol.md``.

Wire shapes follow WatermelonDB's sync protocol: records are flat objects of
raw snake_case columns whose values are strings, numbers, booleans or null
(lists travel as JSON-encoded strings, as WatermelonDB columns hold no
arrays).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

#: The protocol's schema version: the newest the server speaks, and the oldest
#: it still serves (below it the server answers 426 Upgrade Required).
SCHEMA_VERSION = 1
OLDEST_SUPPORTED_SCHEMA_VERSION = 1

#: Ids the client generates: UUIDs (any version) or WatermelonDB's 16-character ids.
_HEX = "[0-9a-fA-F]"
CLIENT_ID_PATTERN = (
    rf"^(?:{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}|[A-Za-z0-9]{{16}})$"
)
CLIENT_ID = re.compile(CLIENT_ID_PATTERN)

DEFAULT_PAGE_SIZE = 500
MAX_PAGE_SIZE = 5000
MAX_PUSH_RECORDS = 5000


@dataclass(frozen=True)
class Column:
    name: str
    since: int = 1  # first schema version that has it
    client_owned: bool = False


def _cols(names: str, *, client_owned: bool = False, since: int = 1) -> tuple[Column, ...]:
    return tuple(Column(n, since, client_owned) for n in names.split())


#: Every synced table, its columns, and which the client owns.  ``id`` is
#: always present.  A table or column added later gets ``since=N`` and the
#: server back-fills it when a client migrates to N.
TABLES: dict[str, tuple[Column, ...]] = {
    "projects": _cols(
        "slug name description license min_latitude min_longitude max_latitude "
        "max_longitude agreements_required auto_accept max_uncertainty_m is_open"
    ),
    "taxa": _cols("scientific_name rank vernacular_nl vernacular_en taxon_group sensitive"),
    "phenophases": _cols("code name definition ppo_iri groups intensity"),
    "observations": _cols(
        "project_id taxon_id phenophase_id status intensity observed_at latitude longitude "
        "coordinate_uncertainty_m geoprivacy notes license created_at updated_at",
        client_owned=True,
    )
    + _cols(
        "review_status quality_flags verified_taxon_id verified_phenophase_id "
        "server_created_at server_updated_at"
    ),
    "photos": _cols("observation_id sha256 license created_at updated_at", client_owned=True)
    + _cols(
        "upload_state failure_code width height derivatives original_url exif exif_taken_at "
        "exif_latitude exif_longitude server_created_at server_updated_at"
    ),
}
TABLE_SINCE: dict[str, int] = {name: 1 for name in TABLES}

#: Tables a device may write; the others are reference data, read-only there.
PUSHABLE_TABLES = ("observations", "photos")


def columns_for(table: str, schema_version: int) -> tuple[str, ...]:
    return tuple(c.name for c in TABLES[table] if c.since <= schema_version)


def client_owned(table: str) -> tuple[str, ...]:
    return tuple(c.name for c in TABLES[table] if c.client_owned)


def tables_for(schema_version: int) -> tuple[str, ...]:
    return tuple(t for t, since in TABLE_SINCE.items() if since <= schema_version)


class Rejection(StrEnum):
    """Why a pushed record was not applied: stable codes."""

    INVALID_ID = "invalid_id"
    INVALID_RECORD = "invalid_record"
    UNKNOWN_TABLE = "unknown_table"
    READ_ONLY_TABLE = "read_only_table"
    UNKNOWN_PROJECT = "unknown_project"
    NOT_A_MEMBER = "not_a_member"
    UNKNOWN_TAXON = "unknown_taxon"
    UNKNOWN_PHENOPHASE = "unknown_phenophase"
    PHENOPHASE_NOT_FOR_TAXON = "phenophase_not_valid_for_taxon"
    TAXON_NOT_IN_PROJECT = "taxon_not_in_project"
    INVALID_INTENSITY = "invalid_intensity"
    FUTURE_DATE = "future_date"
    IMPLAUSIBLE_DATE = "implausible_date"
    UNKNOWN_OBSERVATION = "unknown_observation"
    ID_TAKEN = "id_taken"
    DELETED = "deleted"
    CONFLICT = "conflict"
    # A late copy of an older push: the same device has written this record
    # since, from a later push (docs/sync-protocol.md, "Late deliveries").
    SUPERSEDED = "superseded"

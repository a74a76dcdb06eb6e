"""What an export reads: a small interface the server implements.

``exports`` never imports the server or its ORM; the server hands a
``ReleaseSource`` to ``exports.release.build_release``.  Observation rows come
in batches of plain column lists, so the exporter turns each batch into Arrow
arrays without touching one row at a time, and memory stays bounded by the
batch size however large the database is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

#: Keys of an observation batch (each a list of equal length).  ``taxon_id``
#: and ``phenophase_id`` are the effective ones (a reviewer's correction
#: replaces the observer's choice); ``observed_at`` is UTC, as a timezone-aware
#: datetime or an ISO 8601 string; ``notes`` is None unless the project
#: publishes notes; ``flags`` holds a list of quality-flag codes per row, or is
#: None when no row of the batch has a flag.
OBSERVATION_KEYS = (
    "id",
    "user_id",
    "project_id",
    "taxon_id",
    "phenophase_id",
    "status",
    "intensity",
    "observed_at",
    "offset_min",
    "latitude",
    "longitude",
    "uncertainty_m",
    "geoprivacy",
    "notes",
    "license",
    "review_status",
    "modified",
    "flags",
)

ObservationBatch = dict[str, Any]  # key -> list of values (``flags``: or None)


@dataclass(frozen=True)
class TaxonRow:
    id: int
    scientific_name: str
    rank: str
    vernacular_nl: str
    vernacular_en: str
    group: str
    sensitive: bool


@dataclass(frozen=True)
class PhenophaseRow:
    id: int
    code: str
    name: str
    definition: str
    ppo_iri: str | None
    groups: Sequence[str]


@dataclass(frozen=True)
class PhotoRow:
    id: str
    observation_id: str
    user_id: int
    license: str


class ReleaseSource(Protocol):
    """The published rows: neither deleted nor rejected."""

    async def count(self) -> int:
        """How many observations will be published (for progress)."""
        ...

    async def years(self) -> list[int]:
        """Years (local time of the observation) that have observations."""
        ...

    def observations(self, year: int) -> AsyncIterator[ObservationBatch]:
        """The year's observations in batches, ordered by ``observed_at``.

        A batch never splits rows with the same ``observed_at``, so sorting
        each batch by (eventDate, scientificName) sorts the whole year.
        """
        ...

    async def taxa(self) -> list[TaxonRow]: ...

    async def phenophases(self) -> list[PhenophaseRow]: ...

    def photos(self) -> AsyncIterator[list[PhotoRow]]:
        """Ready photos of published observations, in batches."""
        ...

    async def still_published(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are published now (to find retracted ids)."""
        ...

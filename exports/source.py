"""What an export reads: a small interface the server implements.

``exports`` never imports the server or its ORM; the server hands a
``ReleaseSource`` to ``exports.release.build_release``.  Observations come as
Arrow record batches in no particular order (the database's storage order is
the cheapest read); the exporter sorts each year in bounded memory
(``exports.runs``), so memory stays flat however large the database is.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

#: Columns of an observation batch (a ``pyarrow.RecordBatch``).  ``taxon_id``
#: and ``phenophase_id`` are the effective ones (a reviewer's correction
#: replaces the observer's choice); ``observed_at`` and ``modified`` are UTC,
#: as timestamps or ISO 8601 text; ``intensity`` and ``notes`` are empty text
#: when there is none (``notes`` unless the project publishes notes);
#: ``flags`` holds the row's quality-flag codes joined by "|" in code order
#: (empty: none); ``uncertainty_m`` may be null, or the batch may carry an
#: ``uncertainty_null`` column that is true where it is unknown.
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

    def observations(self) -> AsyncGenerator[Any, None]:
        """Every published observation once, as ``pyarrow.RecordBatch``es with
        the columns of ``OBSERVATION_KEYS``, in any order."""
        ...

    async def taxa(self) -> list[TaxonRow]: ...

    async def phenophases(self) -> list[PhenophaseRow]: ...

    def photos(self) -> AsyncIterator[list[PhotoRow]]:
        """Ready photos of published observations, in batches."""
        ...

    async def still_published(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are published now (to find retracted ids)."""
        ...

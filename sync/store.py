"""What the sync logic needs from storage: a small interface.

``sync`` holds the protocol's rules; ``server.sync_store`` implements this
interface on the ORM.  Both calls run inside one database transaction opened
by the caller, so a push batch commits whole or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol


@dataclass(frozen=True)
class ProjectRef:
    id: int
    is_open: bool
    taxa: frozenset[int]  # the species list; empty means "any taxon"


@dataclass(frozen=True)
class PhenophaseRef:
    id: int
    groups: frozenset[str]
    intensity_codes: frozenset[str]


@dataclass(frozen=True)
class ReferenceData:
    """What a record is validated against, loaded once per push: the
    projects, taxa and phenophases the batch names (``Wanted``)."""

    projects: dict[int, ProjectRef]
    taxa: dict[int, str]  # taxon id -> taxon group
    phenophases: dict[int, PhenophaseRef]
    memberships: frozenset[int]  # project ids the pushing user belongs to


@dataclass(frozen=True)
class Wanted:
    """The reference ids a batch names (``ReferenceData`` holds no others)."""

    projects: frozenset[int]
    taxa: frozenset[int]
    phenophases: frozenset[int]


@dataclass
class StoredRecord:
    """The server's current version of a pushed record."""

    id: str
    user_id: int
    values: dict[str, Any]  # canonical client-owned values (see sync.records)
    client_changed_seq: int
    client_changed_device: str | None
    is_deleted: bool
    wire: dict[str, Any] = field(default_factory=dict)  # as a pull would send it
    # The push that wrote the client-owned values: (its last_pulled_at, the
    # device's push_count or 0).  See ``sync.push.PushStamp``.
    client_changed_stamp: tuple[int, int] = (0, 0)


@dataclass
class Write:
    id: str
    values: dict[str, Any]  # canonical client-owned values
    seq: int
    created: bool


class PushStore(Protocol):
    async def reference(self, user_id: int, wanted: Wanted) -> ReferenceData:
        """The live projects, taxa and phenophases among ``wanted``."""
        ...

    async def load(self, table: str, ids: list[str]) -> dict[str, StoredRecord]: ...

    async def reserve_seqs(self, count: int) -> int:
        """Reserve ``count`` sequence numbers; return the first."""
        ...

    async def save_many(
        self, table: str, user_id: int, device: str | None, writes: list[Write],
        *, stamp: tuple[int, int] = (0, 0),
    ) -> None:
        """Write records (creates in one statement; updates keep server-owned columns);
        ``stamp`` is the push's (last_pulled_at, push_count), kept per record."""
        ...

    async def delete_many(self, table: str, record_ids: list[str], *, first_seq: int) -> None:
        """Mark the records deleted, the n-th with number ``first_seq + n``."""
        ...


class Change(NamedTuple):
    """A row of a pull page: the record as the wire sends it, built once, and
    beside it what the pull decides by (never sent)."""

    seq: int  # the row's updated_seq: pages are ordered by it
    created_seq: int
    deleted: bool
    device: str | None  # the device that pushed the row last
    record: dict[str, Any]


@dataclass(frozen=True)
class Counters:
    """What a pull reads first, in one query of its snapshot."""

    seq: int  # the sequence counter: the newest number handed out
    horizon: int  # the highest number of a purged tombstone: older cursors must resync
    newest: dict[str, int]  # per table, the highest updated_seq of its rows (0: no rows)


class PullStore(Protocol):
    async def counters(self, tables: tuple[str, ...]) -> Counters: ...

    async def changes(
        self, table: str, user_id: int, after: int, limit: int, columns: tuple[str, ...]
    ) -> list[Change]:
        """Rows of ``table`` the user may see with ``updated_seq > after``, oldest first,
        at most ``limit``; each record holds ``id`` and ``columns`` only."""
        ...
